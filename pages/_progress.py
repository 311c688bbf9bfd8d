"""Long measurements on a page: a progress bar that says what is being measured and about how long is left, and a
process-wide store so each result is measured once (``st.cache_data`` would replay the progress bar on every hit).

``measured_once(name, key, label, work)`` returns the stored result for ``key``, or runs ``work(report)`` under a
progress bar: ``work`` calls ``report(fraction, what)`` as it goes, and the time left is extrapolated from the time
the fraction done took (shown once a tenth is done), never a fixed promise.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from pruner_core.config.text import format_duration

T = TypeVar("T")
MAX_ENTRIES = 32  # per store name, oldest forgotten first
_LOCK = threading.Lock()


@st.cache_resource
def _stores() -> dict[str, OrderedDict]:
    return {}


def time_left(fraction: float, elapsed: float) -> str:
    """``", about 12 s left"`` once a tenth is done (from the rate so far); else ``""``."""
    if fraction < 0.1 or fraction >= 1 or elapsed <= 0:
        return ""
    return f", about {format_duration(elapsed / fraction * (1 - fraction))} left"


def with_progress(label: str, work: Callable[[Callable[[float, str], None]], T]) -> T:
    """Run ``work(report)`` under a progress bar titled ``label``; the bar goes when it ends (or fails)."""
    bar = st.progress(0.0, text=f"{label}…")
    start = time.perf_counter()

    def report(fraction: float, what: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        bar.progress(fraction, text=f"{label}: {what}{time_left(fraction, time.perf_counter() - start)}")

    try:
        return work(report)
    finally:
        bar.empty()


def measured_once(name: str, key: tuple, label: str, work: Callable[[Callable[[float, str], None]], T]) -> T:
    """The result stored under ``(name, key)``, or ``work`` run under a progress bar and stored (errors are not)."""
    with _LOCK:
        store = _stores().setdefault(name, OrderedDict())
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = with_progress(label, work)
    with _LOCK:
        store[key] = value
        while len(store) > MAX_ENTRIES:
            store.popitem(last=False)
    return value


def forget_measured(name: str) -> None:
    """Forget every result stored under ``name`` (they are measured again when next asked for)."""
    with _LOCK:
        _stores().pop(name, None)
