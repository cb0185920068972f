"""Timing and progress helpers."""
import os
import subprocess
import sys
import time
from pathlib import Path

import xferutils as xu

ROOT = Path(__file__).resolve().parent.parent


def test_timed_measures_wall_and_cpu():
    with xu.timing.timed("cpu") as t:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
    assert t.wall >= 0.05 and 0.0 < t.cpu <= t.wall + 0.05
    both = t + t
    assert both.wall == 2 * t.wall and set(t.as_dict()) == {"wall_s", "cpu_s"}


def _bar(disable: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    if disable is not None:
        env["TQDM_DISABLE"] = disable
    code = "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='cases'): pass"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr


def test_progress_is_tqdm_and_silent_in_builds_and_tests():
    """Long loops use tqdm.auto: a line outside Jupyter, nothing where TQDM_DISABLE=1 (the book
    build, the tests, gpucheck set it)."""
    assert "cases: 100%" in _bar(None) and "3/3" in _bar(None)
    assert _bar("1") == ""
    assert os.environ.get("TQDM_DISABLE") == "1"  # conftest.py
    notebooks = [p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")]
    assert not any("xu.progress" in text for text in notebooks)
    assert sum("from tqdm.auto import tqdm" in text for text in notebooks) >= 3
