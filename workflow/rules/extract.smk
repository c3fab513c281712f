# With whole-visit jobs (`search_jobs: visit`, `optimize: true`) rule whole_visit writes
# the light curves and their text itself.
if not WHOLE_VISIT_JOBS:

    rule extract:
        """Light curves of every star with the chosen factors (FITS) and the run info."""
        input:
            visit=visit_folder,
            prepared="results/{visit}/prepared.fits",
            factors=factors_file,
        output:
            fits="results/{visit}/lightcurves.fits",
            info="results/{visit}/run_info.yaml",
        params:
            options=options_of,
        benchmark:
            "results/{visit}/benchmarks/extract.tsv"
        log:
            "logs/{visit}/extract.log",
        resources:
            mem_mb=memory(1000, 350),
            runtime=minutes(8, 2),
        script:
            "../scripts/extract.py"

    rule export_text:
        """archi's text layout: MJD_TIME;ROLL_ANGLE then FLUX and FLUX_ERR per star."""
        input:
            "results/{visit}/lightcurves.fits",
        output:
            "results/{visit}/lightcurves.txt",
        benchmark:
            "results/{visit}/benchmarks/export_text.tsv"
        log:
            "logs/{visit}/export_text.log",
        script:
            "../scripts/export_text.py"


rule pycheops_files:
    """Per star, a file pycheops loads as PIPE's output (outputs: pycheops_files)."""
    input:
        "results/{visit}/lightcurves.fits",
    output:
        directory("results/{visit}/pycheops"),
    log:
        "logs/{visit}/pycheops_files.log",
    conda:
        "../envs/archi.yaml"
    script:
        "../scripts/pycheops_files.py"


rule plot_stars:
    """One light-curve plot per star, and the field with every star's aperture."""
    input:
        visit=visit_folder,
        curves="results/{visit}/lightcurves.fits",
    output:
        report(
            directory("results/{visit}/plots/stars"),
            patterns=["{name}.png"],
            caption="../report/stars.rst",
            category="Stars",
            subcategory="{visit}",
            labels={"visit": "{visit}", "figure": "{name}"},
        ),
    benchmark:
        "results/{visit}/benchmarks/plot_stars.tsv"
    log:
        "logs/{visit}/plot_stars.log",
    script:
        "../scripts/plot_stars.py"


rule plot_field_model:
    """A frame, its field model and the residual (the neighbours' light, issue 14)."""
    input:
        visit=visit_folder,
        prepared="results/{visit}/prepared.fits",
    output:
        report(
            "results/{visit}/plots/field_model.png",
            caption="../report/field_model.rst",
            category="Field model",
        ),
    benchmark:
        "results/{visit}/benchmarks/plot_field_model.tsv"
    log:
        "logs/{visit}/plot_field_model.log",
    script:
        "../scripts/plot_field_model.py"


rule plot_target_vs_drp:
    """The target's light curve against the DRP light curve (archi's debug plot)."""
    input:
        visit=visit_folder,
        curves="results/{visit}/lightcurves.fits",
    output:
        report(
            "results/{visit}/plots/target_vs_drp.png",
            caption="../report/target_vs_drp.rst",
            category="Light curves",
        ),
    params:
        options=options_of,
    benchmark:
        "results/{visit}/benchmarks/plot_target_vs_drp.tsv"
    log:
        "logs/{visit}/plot_target_vs_drp.log",
    script:
        "../scripts/plot_target_vs_drp.py"


rule plot_cdpp_vs_factor:
    """CDPP against mask factor for every star, chosen factors marked."""
    input:
        table="results/{visit}/optimization/all_cdpp.tsv",
        factors="results/{visit}/optimization/optimized_factors.yaml",
    output:
        report(
            "results/{visit}/plots/cdpp_vs_factor.png",
            caption="../report/cdpp_vs_factor.rst",
            category="Optimisation",
        ),
    benchmark:
        "results/{visit}/benchmarks/plot_cdpp_vs_factor.tsv"
    log:
        "logs/{visit}/plot_cdpp_vs_factor.log",
    script:
        "../scripts/plot_cdpp_vs_factor.py"


rule gif:
    """An animated GIF of the frames with every star's aperture."""
    input:
        visit=visit_folder,
        curves="results/{visit}/lightcurves.fits",
    output:
        report(
            "results/{visit}/star_tracking.gif",
            caption="../report/gif.rst",
            category="Field",
            subcategory="{visit}",
            labels={"visit": "{visit}", "figure": "tracking (GIF)"},
        ),
    benchmark:
        "results/{visit}/benchmarks/gif.tsv"
    log:
        "logs/{visit}/gif.log",
    resources:
        mem_mb=memory(1000, 350),
        runtime=minutes(8, 3),
    script:
        "../scripts/gif.py"


rule summary:
    """One table of every star of every visit: position, catalogue match, factor, CDPP."""
    input:
        expand("results/{visit}/lightcurves.fits", visit=VISITS.index),
    output:
        report("results/summary.tsv", caption="../report/summary.rst", category="Summary"),
    benchmark:
        "results/benchmarks/summary.tsv"
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"
