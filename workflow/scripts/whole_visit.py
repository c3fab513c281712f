"""Snakemake script: a whole visit in one job, from detection to the text export."""

from pathlib import Path

from _common import finish, start_log

from archi import pipeline
from archi.options import Options

log = start_log(snakemake)
out = snakemake.output
files = pipeline.VisitFiles(factors=Path(out.factors), table=Path(out.table), fits=Path(out.fits),
                       info=Path(out.info), prepared=Path(out.prepared),
                       text=Path(out.text) if "text" in out.keys() else None)
done = pipeline.process_visit(snakemake.input[0], Options.from_mapping(snakemake.params.options),
                         files, layout=snakemake.params.layout, workers=snakemake.threads)
log.info("%s: %d stars, %d frames, %d processes; factors %s", done.prepared.visit_key,
         done.curves.n_stars, done.visit.n_frames, snakemake.threads, done.factors)
finish()
