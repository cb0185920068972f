"""Timing and progress helpers."""
import time

import xferutils as xu


def test_timed_measures_wall_and_cpu():
    with xu.timing.timed("cpu") as t:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
    assert t.wall >= 0.05 and 0.0 < t.cpu <= t.wall + 0.05
    both = t + t
    assert both.wall == 2 * t.wall and set(t.as_dict()) == {"wall_s", "cpu_s"}


def test_progress_yields_everything_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("XFER_PROGRESS", "1")
    assert list(xu.progress.progress(range(3), "cases", every=0.0)) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("cases 1/3") and err[-1] == err[-1].split(",")[0] + ", done"


def test_progress_silent_when_disabled(monkeypatch, capsys):
    monkeypatch.setenv("XFER_PROGRESS", "0")
    assert list(xu.progress.progress(iter([1, 2]), "x", every=0.0)) == [1, 2]
    assert capsys.readouterr().err == ""


def test_progress_line_without_total():
    assert xu.progress._line("steps", 4, None, 3.2) == "steps 4 · 3 s"
