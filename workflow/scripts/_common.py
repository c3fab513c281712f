"""Helpers shared by the workflow's scripts: logging to the job's log file."""

import logging
import os
import sys
import warnings
from typing import NoReturn

FAIL_VARIABLE = "ARCHI_FAIL_OUTPUTS"
"""Fault injection for the failure-recovery tests: a job whose output path ends with one of
the comma-separated suffixes in this environment variable fails on purpose."""


FAILURE_MARK = "ARCHI-FAILED "
"""Starts the last line of a failed job's log: the one line the run ends with (the
Snakefile's onerror handler reads it)."""

FIRST_READERS = {"prepare", "whole_visit"}
"""The jobs that say what reading a visit repaired (InputWarning), once per visit: the
other jobs read the same visit again and keep quiet about it."""


def failure_line(snakemake, error: BaseException) -> str:
    """One line: the visit, the job and the problem (the library's errors name the file)."""
    from archi.errors import ArchiError, one_line

    visit = getattr(snakemake.wildcards, "visit", None)
    where = f"visit {visit} ({snakemake.rule})" if visit else snakemake.rule
    if isinstance(error, ArchiError):
        return f"{where}: {one_line(error)}"
    return (f"{where}: {type(error).__name__}: {one_line(error)} (traceback in "
            f"{snakemake.log[0]})")


def start_log(snakemake) -> logging.Logger:
    """Log to the job's log file (warnings included). An uncaught error ends the job with
    one line on stderr and as the log's last line (its traceback in the log, unless it is
    one of the library's errors, whose message says it all)."""
    from archi.errors import ArchiError, InputWarning

    logging.basicConfig(filename=snakemake.log[0], filemode="w", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    if snakemake.rule not in FIRST_READERS:
        warnings.simplefilter("ignore", InputWarning)
    logger = logging.getLogger("archi")

    def excepthook(kind, value, tb):
        if not isinstance(value, ArchiError):
            logger.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
        line = failure_line(snakemake, value)
        logger.error("%s%s", FAILURE_MARK, line)
        logging.shutdown()
        print(line, file=sys.stderr, flush=True)

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
