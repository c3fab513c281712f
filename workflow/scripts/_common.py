"""Helpers shared by the workflow's scripts: logging to the job's log file."""

import logging
import os
import sys
from typing import NoReturn

FAIL_VARIABLE = "ARCHI_FAIL_OUTPUTS"
"""Fault injection for the failure-recovery tests: a job whose output path ends with one of
the comma-separated suffixes in this environment variable fails on purpose."""


def start_log(snakemake) -> logging.Logger:
    """Log to the job's log file (warnings included); uncaught errors end up there too."""
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    logger = logging.getLogger("archi")

    def excepthook(kind, value, tb):
        logger.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    if "SLURM_JOB_ID" in os.environ:  # what the cluster gave the job, for sizing resources
        logger.info("SLURM job %s on %s: %s CPUs per task, threads %d",
                    os.environ["SLURM_JOB_ID"], os.environ.get("SLURMD_NODENAME", "?"),
                    os.environ.get("SLURM_CPUS_PER_TASK", "?"), snakemake.threads)
    suffixes = [s for s in os.environ.get(FAIL_VARIABLE, "").split(",") if s]
    if any(str(out).endswith(s) for out in snakemake.output for s in suffixes):
        raise RuntimeError(f"failure injected by {FAIL_VARIABLE} for {list(snakemake.output)}")
    return logger


def finish() -> NoReturn:
    """End a job that succeeded: flush the log and the standard streams, then exit at once.

    The interpreter's own teardown (freeing every object one by one) costs a job 0.05-0.15 s
    of CPU, a tenth of a factor job, for nothing: the outputs are written and closed, the
    worker processes joined. A job that fails raises before it gets here, the normal way."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
