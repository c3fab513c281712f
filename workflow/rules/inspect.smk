rule inspect_visit:
    """Read a visit with the library; write a one-row summary and the DRP light curves."""
    input:
        visit_folder,
        fingerprint=fingerprint_of,
    output:
        summary="results/{visit}/visit_summary.tsv",
        plot=report(
            "results/{visit}/plots/drp_lightcurves.png",
            caption="../report/drp_lightcurves.rst",
            category="Visits",
        ),
    params:
        layout=config["layout"],
        aperture=lambda wc: OPTIONS[wc.visit].official_curve,
    log:
        "logs/{visit}/inspect_visit.log",
    resources:
        mem_mb=memory(800, 250),
        runtime=minutes(8, 1),
    script:
        "../scripts/inspect_visit.py"
