"""Progress of long loops, for people who run a chapter by hand (every chapter's long loops).

``for case in progress(cases, "cases"): ...`` prints ``cases 2/3 · 41 s, about 20 s left`` to
standard error at most every few seconds. It shows in Jupyter and in papermill's log
(``--log-output``); the book build drops standard error (``nb_output_stderr: remove``) and the
tests set ``XFER_PROGRESS=0``, so neither shows it.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PROGRESS_ENV = "XFER_PROGRESS"


def enabled() -> bool:
    """False when ``XFER_PROGRESS`` is ``0`` (tests)."""
    return os.environ.get(PROGRESS_ENV, "1") not in ("0", "false", "no", "")


def progress(items: Iterable[T], desc: str, total: int | None = None, every: float = 2.0) -> Iterator[T]:
    """Yield ``items``, reporting done/total, elapsed and remaining time every ``every`` seconds."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    if not enabled():
        yield from items
        return
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every or done == total:
            last = now
            sys.stderr.write(_line(desc, done, total, now - start) + "\n")
            sys.stderr.flush()


def _line(desc: str, done: int, total: int | None, elapsed: float) -> str:
    """``desc 2/3 · 41 s, about 20 s left``."""
    if total:
        left = elapsed / done * (total - done)
        tail = ", done" if done == total else f", about {left:.0f} s left"
        return f"{desc} {done}/{total} · {elapsed:.0f} s{tail}"
    return f"{desc} {done} · {elapsed:.0f} s"
