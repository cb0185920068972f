"""The student edition: every chapter without outputs and solutions, with stubs to implement.

``python -m xferutils.student [--src notebooks] [--out _build/student]`` writes a copy of each
chapter notebook (``[0-9]*.ipynb``) in which

- every output and execution count is cleared;
- every ``{solution}`` block of a markdown cell (backtick or colon fence) is removed, and so is
  every cell tagged ``solution``;
- after each exercise whose label ends in ``-impl`` a code cell is inserted with a stub for the
  student: the signature comes from the exercise's ``% stub: def name(...) -> T:`` comment line
  (a MyST comment, invisible in the book), its body raises ``NotImplementedError``.

The convention is documented in CONTRIBUTING.md. Code cells are kept as they are, so the student
edition runs exactly as the chapter does.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from xferutils.core.config import ParameterError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "_build" / "student"
SOLUTION_TAG = "solution"
IMPL_SUFFIX = "-impl"

# an opening fence of 3+ backticks or colons, then {solution}; the block ends at the same fence
_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[a-z-]+)\}(?P<arg>.*)$")


def _blocks(text: str) -> list[tuple[str, str, int, int, list[str]]]:
    """Top-level directive blocks: (name, argument, first line, last line, body lines)."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, j = m["fence"], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        out.append((m["name"], m["arg"].strip(), i, min(j, len(lines) - 1), lines[i + 1:j]))
        i = j + 1
    return out


def strip_solutions(text: str) -> str:
    """``text`` without its ``{solution}`` blocks (and the blank lines they leave behind)."""
    lines = text.split("\n")
    drop: set[int] = set()
    for name, _, first, last, _ in _blocks(text):
        if name == "solution":
            drop |= set(range(first, last + 1))
    kept = [ln for k, ln in enumerate(lines) if k not in drop]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n")


def stubs(text: str) -> list[tuple[str, str]]:
    """(label, stub source) for each exercise in ``text`` whose label ends in ``-impl``.

    The exercise must carry a ``% stub: <signature>`` line; an implementation exercise without
    one is an authoring error and raises :class:`ParameterError`."""
    out = []
    for name, _, _, _, body in _blocks(text):
        if name != "exercise":
            continue
        label = next((ln.split(":", 2)[2].strip() for ln in body if ln.strip().startswith(":label:")), "")
        if not label.endswith(IMPL_SUFFIX):
            continue
        sig = next((ln.strip()[len("% stub:"):].strip() for ln in body if ln.strip().startswith("% stub:")), "")
        if not sig.startswith("def ") or not sig.endswith(":"):
            raise ParameterError(f"exercise {label!r} needs a line '% stub: def name(args) -> type:'")
        out.append((label, f"# Exercise {label}: write your implementation here.\n{sig}\n"
                           f"    raise NotImplementedError(\"exercise {label}\")\n"))
    return out


def _cell_id(label: str) -> str:
    return ("stub-" + re.sub(r"[^A-Za-z0-9_-]", "-", label))[:64]


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` as the student edition (see the module docstring)."""
    out = nbformat.from_dict(nb)
    cells = []
    for cell in out.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            found = stubs(cell.source)
            cell.source = strip_solutions(cell.source)
            if not cell.source.strip():
                continue
            cells.append(cell)
            cells += [nbformat.v4.new_code_cell(src, id=_cell_id(label), metadata={"tags": ["student-stub"]})
                      for label, src in found]
            continue
        cells.append(cell)
    out.cells = cells
    return out


def check_dirs(src: Path, out: Path) -> tuple[Path, Path]:
    """Refuse a source folder without chapters and an output inside (or equal to) the source."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise ParameterError(f"--src {src} does not exist or is not a folder; give the book's notebooks/ folder")
    if not sorted(src.glob("[0-9]*.ipynb")):
        raise ParameterError(f"--src {src} holds no chapter notebooks ([0-9]*.ipynb)")
    if out == src or src in out.parents or out in src.parents:
        raise ParameterError(f"--out {out} must lie outside the source folder {src} (and not contain it): "
                             "the student edition must never overwrite or sit among the chapters")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} exists and is not a folder")
    return src, out


def build(src: str | Path = DEFAULT_SRC, out: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write the student edition of every chapter in ``src`` to ``out``; return the written paths."""
    src, out = check_dirs(Path(src), Path(out))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("[0-9]*.ipynb")):
        nb = student_notebook(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, out / path.name)
        written.append(out / path.name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferutils.student",
                                     description="Write the student edition of every chapter: no outputs, "
                                                 "no solutions, stubs for implementation exercises.")
    parser.add_argument("--src", default=str(DEFAULT_SRC), help="the chapters' folder (default: notebooks/)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where to write (default: _build/student)")
    args = parser.parse_args(argv)
    try:
        written = build(args.src, args.out)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_stubs = sum(sum(c.get("metadata", {}).get("tags", []) == ["student-stub"] for c in
                      nbformat.read(p, as_version=4).cells) for p in written)
    print(f"wrote {len(written)} chapter{'s' if len(written) != 1 else ''} with "
          f"{n_stubs} implementation stub{'s' if n_stubs != 1 else ''} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
