rule simulate_visit:
    """Simulate a visit in DRP and CHEOPSim layouts, with its truth file."""
    input:
        options=lambda wc: VISITS.loc[wc.visit, "simulation"],
    output:
        directory("resources/{visit}"),
    log:
        "logs/{visit}/simulate_visit.log",
    resources:
        mem_mb=memory(1000, 400),
        runtime=minutes(10, 10),
    script:
        "../scripts/simulate_visit.py"
