"""Helpers shared by the page tests."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from pruner_core.frontends import jobs

JOB_DEADLINE_S = 120


def wait_for_job(at: AppTest, key: str, deadline_s: float = JOB_DEADLINE_S, poll_s: float = 0.2) -> jobs.Job:
    """Poll the background job whose id the page keeps in ``session_state[key]`` until it has ended (or fail
    after ``deadline_s``), then rerun the page."""
    job = jobs.get(at.session_state[key])
    deadline = time.monotonic() + deadline_s
    while job.running:
        assert time.monotonic() < deadline, f"the job did not end within {deadline_s} s: {job.update}"
        time.sleep(poll_s)  # a background thread, not UI state: nothing to wait on but time
    at.run()
    assert not at.exception
    return job
