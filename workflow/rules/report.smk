# The end of a run: one short summary on the console (visits done and failed, stars, where
# the results are, warnings), failed jobs' one-line errors last; summary.tsv rewritten with
# the visits done only after a failure. Printed at exit, after Snakemake's own closing
# lines, so that the last line on the console is the failure (or the summary).
import atexit

from archi.io.summary import FAILED_VISITS, run_report, write_failed_visits, write_summary

FAILURE_MARK = "ARCHI-FAILED "  # as workflow/scripts/_common.py writes it


def failed_jobs():
    """The jobs that failed in this run (group jobs opened)."""
    scheduler = getattr(workflow, "scheduler", None)
    jobs = [j for job in getattr(scheduler, "failed", ()) for j in getattr(job, "jobs", [job])]
    return sorted(jobs, key=lambda job: job.jobid)  # the same line whatever the set's order


def failure_of(job):
    """(visit or None, the job's one line): the last marked line of its log, else a line
    naming the rule and the log to read."""
    logs = [str(log) for log in job.log]
    for log in logs:
        path = Path(log)
        marked = [
            l for l in path.read_text(errors="replace").splitlines() if FAILURE_MARK in l
        ] if path.is_file() else []
        if marked:
            return job.wildcards_dict.get("visit"), marked[-1].split(FAILURE_MARK, 1)[1]
    visit = job.wildcards_dict.get("visit")
    where = f"visit {visit} ({job.rule.name})" if visit else job.rule.name
    return visit, f"{where}: failed, see {logs[0] if logs else 'the output above'}"


def visit_done(visit, failed):
    """A visit whose outputs all exist, none older than its products' fingerprint (an
    output left from a run on replaced products is not done)."""
    if visit in failed:
        return False
    outputs = [Path(o) for o in visit_outputs(visit)]
    if not all(o.exists() for o in outputs):
        return False
    fingerprint = Path(fingerprint_path(visit))
    since = fingerprint.stat().st_mtime if fingerprint.exists() else 0
    return all(o.stat().st_mtime >= since for o in outputs)


def print_at_exit(lines):
    def show():
        sys.stdout.flush()
        print("\n".join(lines), file=sys.stderr, flush=True)

    atexit.register(show)


def end_of_run(succeeded):
    """Report the run; after a failure, summary.tsv holds the visits done only."""
    failed, other_lines = {}, []
    for job in failed_jobs():
        visit, line = failure_of(job)
        if visit is None:
            other_lines.append(f"Error: {line}")
        else:
            failed.setdefault(visit, line)
    done = [v for v in VISITS.index if visit_done(v, failed)]
    if not succeeded:
        write_summary([f"results/{v}/lightcurves.fits" for v in done], "results/summary.tsv")
    write_failed_visits(failed, f"results/{FAILED_VISITS}")
    lines = run_report(
        {v: f"results/{v}/run_info.yaml" for v in done},
        failed,
        Path("results").absolute(),
        not_run=VISITS.index,
    )
    print_at_exit(lines + other_lines)
