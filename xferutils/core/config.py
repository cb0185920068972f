"""Presets, parameter validation, device choice and seeding (used by every chapter).

A chapter's ``parameters`` cell holds plain literals; :func:`setup` validates them all before
any work starts and returns the resolved run configuration.
"""
from __future__ import annotations

import ast
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PRESETS = ("smoke", "book", "full")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRESET_ENV = "XFER_PRESET"


class ParameterError(ValueError):
    """A notebook or function parameter has a value that is not allowed."""


# --- validation -------------------------------------------------------------------------------

def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the parameter."""
    if value not in allowed:
        raise ParameterError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")
    return value


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int within [low, high], else raise naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ParameterError(f"{name}={value} is out of range; allowed: integers in {span}")
    return value


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """Return ``value`` as a float within [low, high], else raise naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(f"{name}={value} is out of range; allowed: numbers in [{low}, {high}]")
    return value


def parse_list(name: str, value: Any) -> Any:
    """A list given as a string (papermill's ``-p digits1 '[5, 6, 7]'``) becomes the list it spells."""
    if not isinstance(value, str):
        return value
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise ParameterError(f"{name}={value!r} is not a list literal; write it as [5, 6, 7]") from None
    if isinstance(parsed, tuple):
        parsed = list(parsed)
    if not isinstance(parsed, (list, int)):
        raise ParameterError(f"{name}={value!r} must be a list such as [5, 6, 7]")
    return parsed


def check_seeds(name: str, seeds: Any) -> list[int]:
    """A non-empty list of distinct non-negative integer seeds (a list literal string is parsed)."""
    seeds = parse_list(name, seeds)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, Iterable) or isinstance(seeds, (str, bytes)):
        raise ParameterError(f"{name} must be a list of non-negative integers, got {seeds!r}")
    out = [check_int(f"{name}[{i}]", s, 0, 2**31 - 1) for i, s in enumerate(seeds)]
    if not out or len(set(out)) != len(out):
        raise ParameterError(f"{name} must be a non-empty list of distinct integers, got {out}")
    return out


def check_digits(name: str, digits: Any) -> list[int]:
    """A non-empty list of distinct MNIST digits (0-9), order kept (a list literal string is parsed)."""
    digits = parse_list(name, digits)
    if isinstance(digits, (str, bytes)) or not isinstance(digits, Iterable):
        raise ParameterError(f"{name} must be a list of digits 0-9, got {digits!r}")
    out = [check_int(f"{name}[{i}]", d, 0, 9) for i, d in enumerate(digits)]
    if not out:
        raise ParameterError(f"{name} must not be empty; give digits from 0-9")
    if len(set(out)) != len(out):
        raise ParameterError(f"{name} has repeated digits: {out}")
    return out


# --- presets ----------------------------------------------------------------------------------

def resolve_preset(preset: str) -> str:
    """The preset to run: ``XFER_PRESET`` (if set) overrides the notebook's literal."""
    forced = os.environ.get(PRESET_ENV)
    if forced:
        check_choice(PRESET_ENV, forced, PRESETS)
        return forced
    return check_choice("preset", preset, PRESETS)


def by_preset(preset: str, *, smoke: Any, book: Any, full: Any) -> Any:
    """Pick the value for ``preset``: ``by_preset(p, smoke=1, book=5, full=20)``."""
    return {"smoke": smoke, "book": book, "full": full}[check_choice("preset", preset, PRESETS)]


# --- device, threads and seeds ----------------------------------------------------------------

def physical_cores() -> int:
    """Number of physical CPU cores (logical cores halved when SMT is on, never below 1)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") as fh:
            siblings = len(fh.read().replace("-", ",").split(","))
    except OSError:
        siblings = 1
    return max(1, (os.cpu_count() or 1) // max(1, siblings))


THREADS_ENV = "XFER_THREADS"


def cpu_threads() -> int:
    """Torch threads for CPU training: ``XFER_THREADS`` if set (e.g. 1 beside other work, where two
    threads on a busy 2-core machine spin against each other), else the physical core count."""
    forced = os.environ.get(THREADS_ENV)
    if forced:
        try:
            return check_int(THREADS_ENV, int(forced), 1, 1024)
        except ValueError:
            raise ParameterError(f"{THREADS_ENV}={forced!r} must be a positive integer") from None
    return physical_cores()


def get_device(device: str = "auto") -> torch.device:
    """Resolve ``device``: ``auto`` picks CUDA, then MPS, then CPU; an absent device is an error."""
    check_choice("device", device, DEVICES)
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    if device == "mps" and not has_mps:
        raise ParameterError("device='mps' but Apple MPS is not available; use 'auto' or 'cpu'")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device``: CUDA with bf16, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision(device: torch.device | str) -> tuple[bool, str]:
    """What ``amp="auto"`` picks on ``device`` (True: bf16 autocast) and why, in words.

    Measured for the book's small MLPs (issue 10 of the project): bf16 autocast pays on CPUs with
    AVX512-BF16 or AMX (``python -m xferutils.bench`` recorded 12.5x over document 002's loop with
    bf16 against 5.6x with fp32, same accuracy); on an H100 it was slower than fp32 (1.11 s
    against 0.79 s): these matmuls are too small to be bound by arithmetic, so there fp32 with
    TF32 matmuls (:func:`use_tf32`) is the choice. CPUs without those instructions emulate bf16.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return False, "fp32 + TF32 matmuls (bf16 autocast measured slower for small MLPs on a GPU)"
    if device.type == "cpu":
        if bf16_supported(device):
            return True, "bf16 autocast (this CPU has AVX512-BF16/AMX)"
        return False, "fp32 (this CPU lacks AVX512-BF16/AMX, where bf16 is emulated and slow)"
    return False, "fp32"


def resolve_amp(amp: bool | str, device: torch.device) -> bool:
    """``amp``: True, False or ``"auto"`` (the choice of :func:`precision`)."""
    check_choice("amp", amp, (True, False, "auto"))
    return precision(device)[0] if amp == "auto" else bool(amp)


def use_tf32(device: torch.device | str) -> None:
    """On CUDA, let fp32 matmuls use TF32 tensor cores (10-bit mantissa products, fp32 sums)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# --- the run configuration --------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """What a chapter runs with: the validated preset, device and chapter parameters."""

    chapter: str
    preset: str
    device: torch.device
    params: dict[str, Any] = field(default_factory=dict)

    def pick(self, *, smoke: Any, book: Any, full: Any) -> Any:
        """The value for this run's preset."""
        return by_preset(self.preset, smoke=smoke, book=book, full=full)

    def summary(self) -> str:
        """Where the results of this run come from, in two lines that fit the book's column
        (:func:`short_summary`); the results file keeps the long line (:meth:`environment`)."""
        return short_summary(self.device, self.preset)

    def environment(self) -> str:
        """The long environment line of the results file, with the preset and the chapter."""
        return environment_summary(self.device) + f" | preset {self.preset} | chapter {self.chapter}"

    def seeds(self, *, smoke: int, book: int, full: int) -> list[int]:
        """``seed0, seed0 + 1, ...``: ``n_seeds`` of them if that parameter is set (> 0), else the
        preset's number."""
        n = int(self.params.get("n_seeds") or 0) or self.pick(smoke=smoke, book=book, full=full)
        start = int(self.params.get("seed0", 0))
        return list(range(start, start + n))

    def save(self, results: dict[str, Any], claims: Any = None) -> str:
        """Write ``results`` (with the parameters, the environment line and the claims' verdicts)
        to ``results/<chapter>/<preset>.json``; return the path relative to the repository."""
        from xferutils.pages.results import relative, save_results

        extra: dict[str, Any] = {"params": self.params, "environment": self.environment()}
        if claims is not None:  # a claims.Family keeps its questions beside the verdicts
            extra.update(claims.as_dict() if hasattr(claims, "as_dict") else {"claims": list(claims)})
        return relative(save_results(self.chapter, self.preset, {**extra, **results}))


def setup(chapter: str, preset: str = "book", device: str = "auto", **params: Any) -> Run:
    """Validate the preset and device, set threads, and return the :class:`Run`.

    Chapter-specific parameters are validated by the chapter's own module before calling this;
    they are stored in :attr:`Run.params` so that they are written to the results file.
    """
    if "data_seed" in params:
        check_int("data_seed", params["data_seed"], 0)
    run = Run(chapter=chapter, preset=resolve_preset(preset), device=get_device(device), params=params)
    if run.device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    use_tf32(run.device)
    return run


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''}, {torch.backends.cpu.get_cpu_capability()})"
    return device.type


def short_summary(device: torch.device | str = "cpu", preset: str | None = None) -> str:
    """Two lines of at most 80 characters each (the printed line fits a page's column)::

        xferutils 0.1.0 · torch 2.x · python 3.11.9 · preset book
        device cpu (1 thread, AVX512) · fp32 (no AVX512-BF16/AMX here)
    """
    from xferutils import __version__

    device = torch.device(device)
    bf16, _ = precision(device)
    if device.type == "cuda":
        amp = "fp32 + TF32 matmuls"
    elif device.type == "cpu":
        amp = "bf16 autocast (AVX512-BF16/AMX)" if bf16 else "fp32 (no AVX512-BF16/AMX here)"
    else:
        amp = "fp32"
    first = f"xferutils {__version__} · torch {torch.__version__} · python {platform.python_version()}"
    if preset:
        first += f" · preset {preset}"
    return f"{first}\ndevice {_where(device)} · {amp}"


def environment_summary(device: torch.device | str = "cpu") -> str:
    """``xferutils 0.1.0 | torch 2.x | python 3.x | device cpu (2 threads, AVX512) | amp auto: ...``

    The last field is what ``amp="auto"`` picks on this device and why (:func:`precision`).
    """
    from xferutils import __version__

    device = torch.device(device)
    return (f"xferutils {__version__} | torch {torch.__version__} | "
            f"python {platform.python_version()} | device {_where(device)} | amp auto: {precision(device)[1]}")
