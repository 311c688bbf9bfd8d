"""Helpers shared by the page tests."""

from __future__ import annotations

import time
from pathlib import Path

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


def load_path(at: AppTest, model_path: Path | None = None, *, arch: str | None = None, trust: bool = False,
              data_path: Path | None = None) -> AppTest:
    """Fill the Model page's pickers with file paths (uploads go through the same code) and press Load."""
    if model_path is not None:
        at.radio(key="model.source").set_value("Path on this machine").run()
        at.text_input(key="model.path").set_value(str(model_path))
        at.selectbox(key="model.arch").set_value(arch or at.selectbox(key="model.arch").options[0])
        at.checkbox(key="model.trust").set_value(trust)
    if data_path is not None:
        at.radio(key="model.data_source").set_value("Path on this machine").run()
        at.text_input(key="model.data_path").set_value(str(data_path))
    return at.button(key="model.load").click().run()


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def table(at, column: str):
    """The first table on the page that has ``column``."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def errors(at) -> str:
    return " | ".join(e.value for e in at.error)
