"""What became of every video in a run that failed: done, failed (at which step, with which error),
or not run, so the report accounts for every input even when some of them broke.

The workflow's `onerror` handler calls `outcomes` with the jobs Snakemake says failed (from its
run log, whose "Error in rule …" blocks are the same on a workstation and under the Slurm
executor) and the jobs it still needed to run; `report.write_report` turns them into the rows of
the videos that did not finish. No torch here: this runs in Snakemake's own process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .layout import Results

KILLED = ("no error in its log: the job was stopped from outside (out of memory, a time limit, a signal) "
          "or failed before the step began; see the Snakemake log")
NOT_RUN = "not run: Snakemake stopped at another video's failure (run with --keep-going to go on past it)"
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) (?P<name>[^:]+): (?P<message>.*)$")


@dataclass(frozen=True)
class FailedJob:
    """One job Snakemake reports as failed: its rule, output files and log files."""

    rule: str
    outputs: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()

    def video(self, results: str) -> str | None:
        """The video the job worked on: the folder under `results` its files are in (None for the
        jobs shared by many videos, such as pretraining)."""
        root = Path(results)
        for path in (*self.outputs, *self.logs):
            parts = Path(path).parts
            if parts[: len(root.parts)] == root.parts and len(parts) > len(root.parts) + 1:
                folder = parts[len(root.parts)]
                if folder not in Results.SHARED:
                    return folder
        return None


@dataclass(frozen=True)
class Outcome:
    """What became of one video: `status` is done, failed or not run."""

    video: str
    status: str
    step: str = ""
    error: str = ""
    log: str = ""


def failed_jobs(snakemake_log: str | Path) -> list[FailedJob]:
    """The failed jobs in a Snakemake run log: each "Error in rule <name>:" block, with the
    `output:` and `log:` lines that follow it."""
    jobs, rule, fields = [], None, {}
    lines = Path(snakemake_log).read_text(errors="replace").splitlines() + [""]
    for line in lines:
        start = re.match(r"^Error in rule (\S+):\s*$", line)
        if rule is not None and (start or not line.startswith((" ", "\t"))):
            jobs.append(FailedJob(rule, tuple(fields.get("output", ())), tuple(fields.get("log", ()))))
            rule, fields = None, {}
        if start:
            rule = start.group(1)
            continue
        item = re.match(r"^\s+(output|log): (.*)$", line)
        if rule is not None and item:
            value = item.group(2).split(" (check log file")[0]
            fields[item.group(1)] = [v.strip() for v in value.split(", ") if v.strip()]
    return jobs


def last_error(log_path: str | Path, tail_bytes: int = 65536) -> str:
    """The one line that says what went wrong in a step's log: its last ERROR message (for an
    unexpected failure, the exception's own last line). Empty when the log has none."""
    path = Path(log_path)
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - tail_bytes))
        lines = f.read().decode(errors="replace").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _LOG_LINE.match(lines[i])
        if match and match.group("level") in ("ERROR", "CRITICAL"):
            message = match.group("message").strip()
            if message == "unexpected failure":  # a traceback follows: its last line names the exception
                rest = [line.strip() for line in lines[i + 1 :] if line.strip()]
                message = rest[-1] if rest else message
            return message
    return ""


def outcomes(videos: list[str], results: str, failed: list[FailedJob], pending: set[str] | None,
             finished: set[str]) -> list[Outcome]:
    """Every video's outcome, in sheet order.

    `pending`: the videos with jobs Snakemake still had to run when it stopped (None when it
    cannot say: then a video counts as done if its scores exist). `finished`: the videos whose
    scores and verdict exist. A failed job of no one video (pretraining) fails every video that
    waited for it."""
    own: dict[str, FailedJob] = {}
    shared: list[FailedJob] = []
    for job in failed:
        video = job.video(results)
        if video is None:
            shared.append(job)
        else:
            own.setdefault(video, job)
    def failed_at(video: str, job: FailedJob) -> Outcome:
        log = job.logs[0] if job.logs else ""
        return Outcome(video, "failed", job.rule, last_error(log) or KILLED, log)

    result = []
    for video in videos:
        if video in own:
            result.append(failed_at(video, own[video]))
        elif video in finished and (pending is None or video not in pending):
            result.append(Outcome(video, "done"))
        elif shared:
            result.append(failed_at(video, shared[0]))
        else:
            result.append(Outcome(video, "not run", error=NOT_RUN))
    return result
