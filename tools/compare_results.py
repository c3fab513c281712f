"""Compare two results folders of the workflow: are the science outputs byte-identical?

    python tools/compare_results.py results_before/demo results_after/demo

Every file under the folders is compared byte for byte, except that in FITS files the
``DATE`` card (when the file was written) is ignored, and in YAML files the ``created`` and ``visit_folder`` lines.
Snakemake's job timings (``benchmarks/``) are skipped.
Plots (PNG, GIF) and logs are skipped: matplotlib embeds its version and the time.
Exit status 0 when everything compared is identical.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from astropy.io import fits

SKIPPED = {".png", ".gif", ".log"}
SKIPPED_FOLDERS = {"benchmarks"}  # Snakemake's timings of each job
# when a file was written, and where the visit was (the checkouts compared may differ)
_VOLATILE_YAML = re.compile(rb"^\s*(created|visit_folder):.*$", re.M)


def _fits_differences(a: Path, b: Path) -> list[str]:
    out = []
    with fits.open(a) as ha, fits.open(b) as hb:
        if len(ha) != len(hb):
            return [f"{len(ha)} HDUs against {len(hb)}"]
        for i, (x, y) in enumerate(zip(ha, hb)):
            hx, hy = x.header.copy(), y.header.copy()
            for h in (hx, hy):
                h.remove("DATE", ignore_missing=True)
            if hx.tostring() != hy.tostring():
                out.append(f"HDU {i} header")
            dx = b"" if x.data is None else x.data.tobytes()
            dy = b"" if y.data is None else y.data.tobytes()
            if dx != dy:
                out.append(f"HDU {i} data")
    return out


def _differences(a: Path, b: Path) -> list[str]:
    if a.suffix == ".fits":
        return _fits_differences(a, b)
    x, y = a.read_bytes(), b.read_bytes()
    if a.suffix == ".yaml":
        x, y = _VOLATILE_YAML.sub(b"", x), _VOLATILE_YAML.sub(b"", y)
    return [] if x == y else ["bytes"]


def main(before: str, after: str) -> int:
    root_a, root_b = Path(before), Path(after)
    names = sorted({p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file()}
                   | {p.relative_to(root_b) for p in root_b.rglob("*") if p.is_file()})
    bad = 0
    compared = 0
    for name in names:
        if name.suffix in SKIPPED or SKIPPED_FOLDERS & set(name.parts):
            continue
        a, b = root_a / name, root_b / name
        if not (a.exists() and b.exists()):
            print(f"{name}: only in {'before' if a.exists() else 'after'}")
            bad += 1
            continue
        compared += 1
        diff = _differences(a, b)
        if diff:
            print(f"{name}: differs ({', '.join(diff)})")
            bad += 1
    print(f"{compared} files compared, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
