"""The pages' run listing: read again only when a run folder changes on disk, never stale."""

from __future__ import annotations

import os

from pages import _runs
from pruner_core.pipeline.runs import create_run, fail_run
from pruner_core.pruning.recipe import Recipe


def test_runs_are_read_again_only_when_a_folder_changes(runs_root, monkeypatch):
    reads = []
    real = _runs.list_runs
    monkeypatch.setattr(_runs, "list_runs", lambda root: reads.append(root) or real(root))
    _runs._cached_runs.clear()
    assert _runs.saved_runs() == []
    first = fail_run(create_run(runs_root, {"spec": "demo:lenet300"}, Recipe(), name="first"), "stopped")
    assert [r.id for r in _runs.saved_runs()] == [first.id]
    count = len(reads)
    assert [r.status for r in _runs.saved_runs()] == ["failed"] and len(reads) == count  # unchanged: cached
    status = first.path / "status.json"
    status.write_text("{not json")  # rewritten in place: the folder's files changed
    os.utime(status, ns=(status.stat().st_atime_ns, status.stat().st_mtime_ns + 1_000_000))
    assert [r.status for r in _runs.saved_runs()] == ["damaged"]
    second = fail_run(create_run(runs_root, {"spec": "demo:lenet300"}, Recipe(), name="second"), "stopped")
    assert {r.id for r in _runs.saved_runs()} == {first.id, second.id}


def test_a_running_run_is_always_read_afresh(runs_root, monkeypatch):
    _runs._cached_runs.clear()
    create_run(runs_root, {"spec": "demo:lenet300"}, Recipe(), name="live")
    reads = []
    real = _runs.list_runs
    monkeypatch.setattr(_runs, "list_runs", lambda root: reads.append(root) or real(root))
    assert [r.status for r in _runs.saved_runs()] == ["running"]  # this process is alive
    assert [r.status for r in _runs.saved_runs()] == ["running"]
    assert len(reads) >= 2  # its process may die without touching the folder: never served from the cache
