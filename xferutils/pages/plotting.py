"""One figure style for the whole book, and the plots several chapters share."""
from __future__ import annotations

import re

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def use_style() -> None:
    """Apply the book's matplotlib style (call once in a chapter's first cell)."""
    plt.rcParams.update({
        "figure.figsize": (7.0, 4.0), "figure.dpi": 110, "savefig.dpi": 110,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "axes.prop_cycle": plt.cycler(color=PALETTE),
        "font.size": 10, "axes.titlesize": 11, "legend.frameon": False,
    })


def show_digits(x: torch.Tensor, labels: Sequence[object] | None = None, ncols: int = 10,
                title: str | None = None) -> plt.Figure:
    """A grid of 28×28 images with optional labels."""
    imgs = x.detach().float().cpu().reshape(-1, 28, 28).numpy()
    nrows = int(np.ceil(len(imgs) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.8, nrows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(imgs):
            ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves(ax: plt.Axes, runs: Mapping[str, Sequence[Sequence[float]]], ylabel: str,
           xlabel: str = "epoch") -> plt.Axes:
    """Mean curve with a ±1 std band per method; ``runs[name]`` holds one curve per seed."""
    for name, per_seed in runs.items():
        arr = np.asarray(per_seed, dtype=float)
        mean, std = arr.mean(0), arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])
        x = np.arange(1, arr.shape[1] + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xlabel == "epoch":
        integer_ticks(ax)
    return ax


def integer_ticks(ax: plt.Axes) -> plt.Axes:
    """Whole-number ticks on the x axis (epochs, steps): no "1.5 epochs"."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def data_ticks(ax: plt.Axes, most: int = 10) -> plt.Axes:
    """On a log x axis, ticks at the measured x values, written out ("50", "100", "500"), not
    powers of ten with mantissas ("6×10¹"); left as is when there are more than ``most``."""
    from matplotlib.ticker import NullFormatter

    xs = sorted({float(x) for line in ax.lines for x in np.atleast_1d(line.get_xdata())
                 if np.isfinite(float(x)) and float(x) > 0})
    if xs and len(xs) <= most:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", which="minor", length=0)
    return ax


def bars(ax: plt.Axes, values: Mapping[str, Sequence[float]], ylabel: str, scale: float = 1.0) -> plt.Axes:
    """Bar of the mean with a ±1 std error bar and the individual seeds as dots."""
    names = list(values)
    for i, name in enumerate(names):
        v = np.asarray(values[name], dtype=float) * scale
        ax.bar(i, v.mean(), yerr=v.std(ddof=1) if len(v) > 1 else 0, capsize=4,
               color=PALETTE[i % len(PALETTE)], alpha=0.8)
        ax.plot(np.full(len(v), i), v, "k.", ms=4)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    return ax


def log_count_axes(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, top: float = 100):
    """Finish an accuracy-against-label-count plot: log x axis, 0..``top`` % y axis, legend
    (chapters 4 and 5)."""
    ax.set_xscale("log")
    data_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top)
    ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: plain).

    Show it in a notebook with ``display(Markdown(markdown_table(...)))``. A ``|`` inside a cell
    (``P(Y | X)``) is escaped, so that it cannot split the cell.
    """
    if align and len(align) != len(header):
        raise ValueError(f"align={align!r} needs one letter per column ({len(header)})")
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in (align or "l" * len(header)))
    row = lambda cells: "| " + " | ".join(_PIPE.sub(r"\\|", str(c)) for c in cells) + " |"  # noqa: E731
    return "\n".join([row(header), rule, *map(row, rows)])


_PIPE = re.compile(r"(?<!\\)\|")


SHOW_LINES = 30  # a listing longer than this shows its outline, with the full source folded


def outline(source: str) -> str:
    """The part of a long function or class that teaches: its signature and the first paragraph
    of its docstring (for a class, each method's signature and docstring line), bodies as ``...``."""
    import ast
    import textwrap

    lines = source.splitlines()
    tree = ast.parse(textwrap.dedent(source))
    node = tree.body[0]

    def head(fn, indent: str = "") -> list[str]:
        body = fn.body[0]
        doc = ast.get_docstring(fn)
        start = min([d.lineno for d in getattr(fn, "decorator_list", [])] + [fn.lineno]) - 1
        sig = lines[start:body.lineno - 1]
        pad = " " * (len(lines[body.lineno - 1]) - len(lines[body.lineno - 1].lstrip()))
        out = list(sig)
        if doc:
            para = doc.split("\n\n")[0].strip().splitlines()
            more = "\n\n" in doc.strip()
            out += [f'{pad}"""{para[0]}'] + [pad + x.strip() for x in para[1:]]
            out[-1] += ' ..."""' if more else '"""'
        if isinstance(fn, ast.ClassDef):
            for item in fn.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out += [""] + head(item)
            return out
        return out + [f"{pad}..."]

    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "\n".join(lines[:SHOW_LINES] + ["..."])
    return "\n".join(head(node))


def show_source(obj: object, max_lines: int = SHOW_LINES) -> object:
    """Display the source code of a package function or class in a notebook (the key code).

    Up to ``max_lines`` lines it is shown whole; a longer one shows its :func:`outline` (signature
    and docstring), with the full source in a folded block under it (no backticks in the
    block's title: a fence's info string may not hold any).
    """
    import inspect

    from IPython.display import Markdown

    source = inspect.getsource(obj).rstrip()
    n = len(source.splitlines())
    if n <= max_lines:
        return Markdown(f"```python\n{source}\n```")
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", "it"))
    return Markdown(f"```python\n{outline(source)}\n```\n\n"
                    f"````{{admonition}} Full source of {name} ({n} lines)\n:class: dropdown\n\n"
                    f"```python\n{source}\n```\n````")
