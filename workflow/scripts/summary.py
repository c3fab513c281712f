"""Snakemake script: one table of every star of every visit."""

from pathlib import Path

from _common import finish, start_log

from archi import export
from archi.io.tsv import write_tsv

start_log(snakemake)
rows = []
for path in snakemake.input:
    curves = export.read_lightcurves_fits(path)
    s = curves.stars
    for j in range(curves.n_stars):
        rows.append({"visit": Path(path).parent.name, "file_key": curves.visit_key, "star": j, "x0": s.x0[j], "y0": s.y0[j],
                     "distance": s.distance[j], "source_id": s.source_id[j],
                     "mag": s.mag[j], "method": curves.methods[j],
                     "factor": curves.factors[j], "cdpp_ppm": curves.cdpp[j],
                     "npix": curves.npix[j],
                     "flagged_fraction": float((curves.flag[j] != 0).mean())})
write_tsv(rows, snakemake.output[0], float_format="%.6g")
finish()
