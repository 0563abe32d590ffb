"""Glue for the workflow's thin scripts: logging into the rule's log file, thread count, the
step's settings, and errors that reach the user as one clear line (file + what to do) instead of a
traceback. Every script in workflow/scripts/ is

    with rule_step(snakemake) as settings:
        pipeline.<rule>(**snakemake.input, **snakemake.output, settings=settings)
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager

from .errors import VidenhanceError


@contextmanager
def step(log_path: str | None, threads: int = 1, name: str = "videnhance"):
    """Run a workflow step: log to `log_path` (and warnings to the terminal), set torch threads."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.WARNING)
    log_file = None
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed below
        file_handler = logging.StreamHandler(log_file)
        file_handler.setLevel(logging.INFO)
        handlers.append(file_handler)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # fastai's import-time deprecation notices say nothing to a user of this pipeline
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*weight_norm.*", category=UserWarning)
    threads = str(max(1, int(threads)))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    else:  # read when torch is first imported: a step that never needs torch does not pay to import it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
    saved_stdout = sys.stdout
    if log_file is not None:
        sys.stdout = log_file  # fastai/fastprogress bars go to the log, not between other jobs' lines
    try:
        yield logging.getLogger(name)
    except VidenhanceError as err:
        logging.getLogger(name).error("%s", err)
        print(f"\nvidenhance error: {err}\n  (log: {log_path})", file=sys.stderr)
        sys.exit(1)
    except Exception:
        logging.getLogger(name).exception("unexpected failure")
        raise
    finally:
        sys.stdout = saved_stdout
        if log_file is not None:
            logging.getLogger().removeHandler(handlers[-1])
            log_file.close()


@contextmanager
def rule_step(sm):
    """`step` for a Snakemake script: the rule's log, threads and name, and the step's settings:
    the rule's `params` (the config sections it declares, so Snakemake reruns it when they change;
    `version` is only there for that) plus the run-time `device`, `memory_mb` and `infer` keys,
    and the memory budget they set (`memory.set_budget`)."""
    from .config import runtime_settings
    from .memory import set_budget
    from .settings import Settings

    settings = Settings.from_dict({k: v for k, v in sm.params.items() if k not in ("version", "part")}
                                  | runtime_settings(sm.config))
    set_budget(settings.memory_mb)
    with step(sm.log[0] if sm.log else None, sm.threads, sm.rule):
        yield settings
