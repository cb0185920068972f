import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import xferutils as xu  # noqa: E402


def test_use_style_sets_book_style():
    xu.plotting.use_style()
    assert plt.rcParams["axes.spines.top"] is False and plt.rcParams["axes.grid"] is True


def test_show_digits_grid_and_labels():
    fig = xu.plotting.show_digits(torch.rand(12, 784), labels=list(range(12)), ncols=5)
    axes = fig.axes
    assert len(axes) == 15 and sum(bool(ax.images) for ax in axes) == 12
    assert axes[11].get_title() == "11"
    plt.close(fig)


def test_curves_plot_mean_and_band():
    fig, ax = plt.subplots()
    xu.plotting.curves(ax, {"a": [[1, 2, 3], [3, 4, 5]]}, "acc")
    (line,) = ax.lines
    assert np.allclose(line.get_ydata(), [2, 3, 4]) and len(ax.collections) == 1
    assert ax.get_ylabel() == "acc"
    plt.close(fig)


def test_bars_show_mean_and_seeds():
    fig, ax = plt.subplots()
    xu.plotting.bars(ax, {"x": [0.5, 0.7], "y": [0.1, 0.1]}, "acc", scale=100)
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([60.0, 10.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    plt.close(fig)


def test_show_source_is_markdown_of_the_code():
    md = xu.show(xu.metrics.spread)
    assert md.data.startswith("```python\ndef spread(") and "admonition" not in md.data


def test_long_listing_shows_its_outline_and_folds_the_full_source():
    import inspect

    md = xu.show(xu.ensemble.fit_replicas).data
    outline, folded = md.split("````{admonition}")
    n = len(inspect.getsource(xu.ensemble.fit_replicas).splitlines())
    assert n > xu.plotting.SHOW_LINES
    assert outline.startswith("```python\ndef fit_replicas(") and outline.rstrip().endswith("...\n```")
    assert len(outline.splitlines()) < 15
    assert folded.startswith(f" Full source of fit_replicas ({n} lines)\n:class: dropdown\n")
    from markdown_it import MarkdownIt  # the fences parse: two code blocks, one inside the other

    tokens = MarkdownIt("commonmark").parse(md)
    assert [t.info.split()[0] for t in tokens if t.type == "fence"] == ["python", "{admonition}"]
    assert inspect.getsource(xu.ensemble.fit_replicas).rstrip() in folded
    cls = xu.plotting.outline(inspect.getsource(xu.sharing.SharedNet))
    assert "def forward(" in cls and "        ..." in cls and "nn.Linear(" not in cls


def test_glue_gives_plain_python_values(monkeypatch):
    seen = {}
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display: seen.setdefault(name, value))
    assert xu.results.glue("test_value", np.float64(1.5)) is None  # nothing printed at a cell's end
    xu.results.glue("test_int", torch.tensor(3))
    xu.results.glue_all({"a": np.float32(2.0)}, prefix="p_")
    assert type(seen["test_value"]) is float and type(seen["test_int"]) is int
    assert type(seen["p_a"]) is float


def test_markdown_table():
    t = xu.plotting.markdown_table(["a", "b"], [[1, 2]])
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    assert xu.plotting.markdown_table(["a", "b"], [], align="lr").splitlines()[1] == "|---|---:|"
    with pytest.raises(ValueError, match="align"):
        xu.plotting.markdown_table(["a", "b"], [], align="l")


def test_epoch_axes_have_whole_ticks_and_log_axes_the_measured_counts():
    fig, ax = plt.subplots()
    xu.plotting.curves(ax, {"a": [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]]}, "loss")
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    fig2, ax2 = plt.subplots()
    ax2.plot([50, 100, 500], [1, 2, 3])
    xu.plotting.log_count_axes(fig2, ax2, "images", "acc")
    fig2.canvas.draw()
    assert list(ax2.get_xticks()) == [50, 100, 500]
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["50", "100", "500"]
    plt.close(fig)
    plt.close(fig2)


def test_markdown_table_escapes_a_pipe_inside_a_cell():
    t = xu.plotting.markdown_table(["claim", "where"], [["P(Y | X) differs", "Chapter 2"], [r"a \| b", "x"]])
    body = t.splitlines()[2]
    assert body == r"| P(Y \| X) differs | Chapter 2 |"  # still two cells
    assert t.splitlines()[3] == r"| a \| b | x |"  # an escaped pipe is not escaped twice
