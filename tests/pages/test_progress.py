"""Long measurements on a page: measured once per key (not replayed), with the time left extrapolated, not promised."""

from __future__ import annotations

import pytest

from pages import _progress
from pages._progress import forget_measured, measured_once, time_left


def test_time_left_is_extrapolated_from_the_rate_so_far_once_a_tenth_is_done():
    assert time_left(0.05, 3.0) == ""  # too early to say
    assert time_left(0.5, 10.0) == ", about 10 s left"
    assert time_left(0.25, 60.0) == ", about 3 min left"
    assert time_left(1.0, 60.0) == ""


def test_a_result_is_measured_once_per_key_and_again_after_it_is_forgotten():
    forget_measured("test")
    calls = []

    def work(report):
        report(0.5, "half way")
        calls.append(1)
        return len(calls)

    assert measured_once("test", ("a",), "Measuring", work) == 1
    assert measured_once("test", ("a",), "Measuring", work) == 1  # stored: not measured again
    assert measured_once("test", ("b",), "Measuring", work) == 2
    forget_measured("test")
    assert measured_once("test", ("a",), "Measuring", work) == 3


def test_a_failed_measurement_is_not_stored(monkeypatch):
    forget_measured("test")

    def fail(report):
        raise ValueError("the data does not fit")

    with pytest.raises(ValueError):
        measured_once("test", ("a",), "Measuring", fail)
    assert measured_once("test", ("a",), "Measuring", lambda report: "ok") == "ok"


def test_the_store_forgets_the_oldest_beyond_its_size(monkeypatch):
    forget_measured("test")
    monkeypatch.setattr(_progress, "MAX_ENTRIES", 2)
    for key in "abc":
        measured_once("test", (key,), "Measuring", lambda report, key=key: key)
    assert measured_once("test", ("a",), "Measuring", lambda report: "again") == "again"
    assert measured_once("test", ("c",), "Measuring", lambda report: "again") == "c"
