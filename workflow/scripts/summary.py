"""Snakemake script: one table of every star of every visit."""

from pathlib import Path

import pandas as pd
from _common import finish, start_log

from archi import export
from archi.io.fitswrite import atomic_path

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
with atomic_path(snakemake.output[0]) as tmp:
    pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
finish()
