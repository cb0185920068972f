"""Each chapter's key numbers, written atomically to ``results/<chapter>/<preset>.json``."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

RESULTS_ENV = "XFER_RESULTS_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "results"


def results_dir() -> Path:
    """``$XFER_RESULTS_DIR`` if set, else ``<repo>/results`` (git-ignored)."""
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_DIR)


def _plain(obj: Any) -> Any:
    """JSON-ready copy: tensors and NumPy values become lists and floats, NaN becomes null."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "as_dict"):
        return _plain(obj.as_dict())
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_results(chapter: str, preset: str, results: dict[str, Any]) -> Path:
    """Write a chapter's results (with its preset) to ``results/<chapter>/<preset>.json``."""
    path = results_dir() / chapter / f"{preset}.json"
    atomic_write_text(path, json.dumps(_plain({"chapter": chapter, "preset": preset, **results}),
                                       indent=2, sort_keys=True))
    return path


def relative(path: Path) -> str:
    """``path`` relative to the repository (or the working directory): no machine's absolute path
    on a page."""
    path = Path(path).resolve()
    for base in (DEFAULT_DIR.parent, Path.cwd()):
        try:
            return str(path.relative_to(base.resolve()))
        except ValueError:
            continue
    return path.name


def load_results(chapter: str, preset: str) -> dict[str, Any]:
    """Read back what :func:`save_results` wrote."""
    return json.loads((results_dir() / chapter / f"{preset}.json").read_text())


def glue_all(values: dict[str, Any], prefix: str = "") -> None:
    """Glue every ``name: value`` of ``values`` (names prefixed with ``prefix``)."""
    for name, value in values.items():
        glue(prefix + name, value)


def glue(name: str, value: Any) -> None:
    """Glue a number for the prose (``{glue:text}`name:.1f```), as a plain Python value.

    NumPy and torch scalars become ``float``/``int`` first, so that format specs work. Returns
    nothing, so a glue call at the end of a cell prints no stray value.
    """
    from myst_nb import glue as _glue

    if hasattr(value, "item"):
        value = value.item()
    _glue(name, value, display=False)


# --- numbers as a reader sees them --------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_NEGATIVE_ZERO = re.compile(r"(?<![\w.])[-−](0(?:\.0+)?)(?![\d.])")
_E_NOTATION = re.compile(r"(?<![\w.])([-+]?\d(?:\.\d+)?)[eE]([-+]?)0*(\d+)\b")


def tidy(text: str) -> str:
    """A formatted number as prose shows it: no negative zero ("-0.0" -> "0.0") and no
    e-notation ("9.5e-07" -> "9.5 × 10⁻⁷"; "1e+00" -> "1"). Other text passes unchanged."""
    text = _NEGATIVE_ZERO.sub(r"\1", text)

    def power(m: re.Match) -> str:
        mantissa, sign, exp = m.group(1), m.group(2), m.group(3)
        if exp == "0":
            return mantissa
        exp = ("-" if sign == "-" else "") + exp
        return f"10{exp.translate(_SUPERSCRIPT)}" if mantissa.lstrip("+") == "1" else \
            f"{mantissa} × 10{exp.translate(_SUPERSCRIPT)}"
    return _E_NOTATION.sub(power, text)


def number(value: float, spec: str = ".1f") -> str:
    """``format(value, spec)`` through :func:`tidy`: ``number(-0.04, "+.1f") == "0.0"``."""
    return tidy(format(value, spec))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 seed``, ``5 seeds``; ``plural(1, "labelled image")`` is ``1 labelled image``."""
    return f"{n} {word if n == 1 else many or word + 's'}"
