"""Helpers shared by the workflow's scripts: logging to the job's log file."""

import logging
import sys


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
    return logger
