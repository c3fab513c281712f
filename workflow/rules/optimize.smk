# Detection and tracking, then the factor search. With `search_jobs: factor`, one photometry
# job per factor, a checkpoint per round that decides which stars need a higher range, then
# the circle fine tune in `fine_tune_jobs` jobs per visit. With `search_jobs: visit` (and
# `optimize: true`) a whole visit is one job: detection, tracking, the search, the
# extraction and the text export (rules prepare, extract and export_text are then not
# defined). Either way the search ends in the same two files (optimized_factors.yaml,
# all_cdpp.tsv). Tables are written atomically, so a killed job never leaves one that looks
# complete.


if WHOLE_VISIT_JOBS:

    rule whole_visit:
        """A whole visit in one job: detection and tracking, the factor search (grid,
        extensions, fine tune), the light curves with the chosen factors, their text."""
        input:
            visit_folder,
            fingerprint=fingerprint_of,
        output:
            prepared="results/{visit}/prepared.fits",
            factors="results/{visit}/optimization/optimized_factors.yaml",
            table="results/{visit}/optimization/all_cdpp.tsv",
            fits="results/{visit}/lightcurves.fits",
            info="results/{visit}/run_info.yaml",
            **TEXT_OUTPUT,
        params:
            options=options_of,
            layout=config["layout"],
        benchmark:
            "results/{visit}/benchmarks/whole_visit.tsv"
        log:
            "logs/{visit}/whole_visit.log",
        # the frames split between two processes (Snakemake gives fewer with fewer cores)
        threads: 2
        resources:
            mem_mb=memory(1000, 400),
            runtime=minutes(15, 5),
        script:
            "../scripts/whole_visit.py"

else:

    rule prepare:
        """Detect the stars of a visit and track them through every frame."""
        input:
            visit_folder,
            fingerprint=fingerprint_of,
        output:
            "results/{visit}/prepared.fits",
        params:
            options=options_of,
            layout=config["layout"],
        benchmark:
            "results/{visit}/benchmarks/prepare.tsv"
        log:
            "logs/{visit}/prepare.log",
        # cosmic rays found while the stars are detected, tracking frames split in two
        threads: 2
        resources:
            mem_mb=memory(800, 400),
            runtime=minutes(10, 3),
        script:
            "../scripts/prepare.py"


if config["search_jobs"] == "factor":

    rule photometry:
        """CDPP of every star (round 0) or of the extended stars (later rounds) at one factor."""
        input:
            visit=visit_folder,
            prepared="results/{visit}/prepared.fits",
            decision=photometry_decision,
        output:
            "results/{visit}/optimization/round{round}/f{factor}.tsv",
        benchmark:
            "results/{visit}/benchmarks/optimization/round{round}/f{factor}.tsv"
        log:
            "logs/{visit}/optimization/round{round}/f{factor}.log",
        group:
            "factors"
        resources:
            mem_mb=memory(600, 350),
            runtime=minutes(4, 1),
        script:
            "../scripts/photometry_factor.py"


    checkpoint select_round:
        """Best factors so far; which stars sit at the top of the range and go on."""
        localrule: True
        input:
            unpack(select_round_input),
        output:
            "results/{visit}/optimization/round{round}.yaml",
        params:
            options=options_of,
        benchmark:
            "results/{visit}/benchmarks/optimization/round{round}.tsv"
        log:
            "logs/{visit}/optimization/round{round}.log",
        script:
            "../scripts/select_round.py"


    checkpoint plan_fine_tune:
        """Stars of the circle fine tune and their radii (best +/- 1 px in 0.1-px steps)."""
        localrule: True
        input:
            all_search_tables,
        output:
            "results/{visit}/optimization/fine_plan.yaml",
        params:
            options=options_of,
        benchmark:
            "results/{visit}/benchmarks/optimization/fine_plan.tsv"
        log:
            "logs/{visit}/optimization/fine_plan.log",
        script:
            "../scripts/plan_fine_tune.py"


    rule fine_tune:
        """CDPP of a part of the fine-tune stars over their radii (one pass over the cube)."""
        input:
            visit=visit_folder,
            prepared="results/{visit}/prepared.fits",
            plan="results/{visit}/optimization/fine_plan.yaml",
        output:
            "results/{visit}/optimization/fine/part{part}.tsv",
        params:
            jobs=config["fine_tune_jobs"],
        benchmark:
            "results/{visit}/benchmarks/optimization/fine/part{part}.tsv"
        log:
            "logs/{visit}/optimization/fine/part{part}.log",
        group:
            "factors"
        resources:
            mem_mb=memory(600, 350),
            runtime=minutes(4, 1),
        script:
            "../scripts/fine_tune_stars.py"


    rule choose_factors:
        """The best factor of every star over all runs; the optimised-factors file."""
        localrule: True
        input:
            search=all_search_tables,
            fine=fine_tables,
            prepared="results/{visit}/prepared.fits",
        output:
            factors="results/{visit}/optimization/optimized_factors.yaml",
            table="results/{visit}/optimization/all_cdpp.tsv",
        params:
            options=options_of,
        benchmark:
            "results/{visit}/benchmarks/optimization/choose_factors.tsv"
        log:
            "logs/{visit}/optimization/choose_factors.log",
        script:
            "../scripts/choose_factors.py"
