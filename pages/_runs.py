"""The saved runs as the pages list them: read again only when a run folder changes on disk."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from pruner_core.pipeline.runs import Run, default_root, list_runs


def runs_root() -> Path:
    """The folder runs are saved to: ``$PRUNER_RUNS``, else ``./runs`` (read on every call)."""
    return default_root()


def list_runs_by_path(root: str | Path) -> dict[str, Run]:
    """Every run under ``root`` by its folder path (see :func:`~pruner_core.pipeline.runs.list_runs`)."""
    return {str(run.path): run for run in list_runs(root)}


def _runs_stamp(root: Path) -> tuple:
    """What changes whenever a run folder under ``root`` gains, loses or rewrites a file: names and mtimes."""
    stamp = []
    try:
        folders = [e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return ()
    for folder in folders:
        try:
            stamp.append((folder.name, max((e.stat().st_mtime_ns for e in os.scandir(folder.path)),
                                           default=folder.stat().st_mtime_ns)))
        except OSError:
            stamp.append((folder.name, None))
    return tuple(sorted(stamp, key=str))


@st.cache_data(max_entries=8, show_spinner=False)
def _cached_runs(root: str, stamp: tuple) -> list[Run]:
    return list_runs(root)


def saved_runs() -> list[Run]:
    """The runs under :func:`runs_root`, newest first, read again only when a run folder changed on disk.

    Running runs are always read afresh: their process may die without touching the folder (then they are
    listed as interrupted).
    """
    root = runs_root()
    runs = _cached_runs(str(root), _runs_stamp(root))
    return list_runs(root) if any(r.status == "running" for r in runs) else runs
