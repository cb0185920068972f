"""Wall-clock and CPU time of a block of work, synchronised with the device (every chapter, bench).

``with timed(device) as t: ...`` then ``t.wall`` and ``t.cpu`` (seconds). CUDA work is
asynchronous, so the device is synchronised before the clock is read at both ends.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Timer:
    """Seconds of wall-clock and process CPU time (filled in when the block ends)."""

    wall: float = 0.0
    cpu: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall, "cpu_s": self.cpu}

    def __add__(self, other: Timer) -> Timer:
        return Timer(self.wall + other.wall, self.cpu + other.cpu)


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and torch.device(device).type == "mps":
        torch.mps.synchronize()


@contextmanager
def timed(device: torch.device | str | None = None) -> Iterator[Timer]:
    """Time the block: ``with timed(run.device) as t: ...; t.wall, t.cpu``."""
    timer = Timer()
    synchronize(device)
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield timer
    finally:
        synchronize(device)
        timer.wall, timer.cpu = time.perf_counter() - w0, time.process_time() - c0
