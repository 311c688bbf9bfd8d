"""Background jobs: a pruning run in a thread of this process, which outlives the page that started it.

``JOBS`` is the registry (job id -> :class:`Job`). A page starts a job, keeps its id, and polls
:attr:`Job.update` to draw a progress bar and live curves; navigating away leaves the thread running.
A job's outcome is its experiment folder, so a finished run is also found after an app restart.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pruner_core.errors import PrunerError
from pruner_core.pipeline.finetune import Cancelled
from pruner_core.pipeline.run import Update


@dataclass
class Job:
    """One background run. ``state`` is running, done, cancelled or failed; ``result`` is what ``work`` returned."""

    id: str
    label: str
    cancel: threading.Event = field(default_factory=threading.Event)
    update: Update | None = None
    state: str = "running"
    result: object = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"


JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def start(label: str, work: Callable[[Callable[[Update], None], threading.Event], object]) -> Job:
    """Run ``work(report, cancel)`` in a daemon thread and return its job at once.

    ``work`` reports progress by calling ``report(update)`` and should stop with
    :class:`~pruner_core.pipeline.finetune.Cancelled` once ``cancel`` is set.
    """
    job = Job(uuid.uuid4().hex[:12], label)

    def report(update: Update) -> None:
        job.update = update

    def target() -> None:
        try:
            job.result = work(report, job.cancel)
            job.state = "done"
        except Cancelled as e:
            job.state, job.error = "cancelled", str(e)
        except PrunerError as e:
            job.state, job.error = "failed", str(e)
        except Exception as e:  # a bug: shown on the page rather than lost in a thread
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"

    job.thread = threading.Thread(target=target, name=f"prune-{job.id}", daemon=True)
    with _LOCK:
        JOBS[job.id] = job
    job.thread.start()
    return job


def get(job_id: str | None) -> Job | None:
    return JOBS.get(job_id) if job_id else None
