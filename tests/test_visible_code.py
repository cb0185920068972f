"""Each chapter as a reader sees it: its visible code cells, in order, without the hidden ones
(``remove-cell``, ``remove-input``), run at the smoke preset. A student who copies the code shown
on a page gets no ``NameError``.

Run alone with ``pytest -m visible_code tests/test_visible_code.py``.
"""
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
HIDDEN = {"remove-cell", "remove-input"}

pytestmark = pytest.mark.visible_code


def visible_cells(nb) -> list:
    """The code cells whose code shows on the page (the parameters and install cells included)."""
    return [c for c in nb.cells if c.cell_type == "code" and not HIDDEN & set(c.metadata.get("tags", []))]


def test_visible_cells_leave_out_hidden_ones():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("b = 2", metadata={"tags": ["remove-cell"]}),
        nbformat.v4.new_code_cell("display(b)", metadata={"tags": ["remove-input"]}),
        nbformat.v4.new_markdown_cell("text")])
    assert [c.source for c in visible_cells(nb)] == ["a = 1"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_code_runs_alone(path, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    assert os.environ.get("XFER_PRESET") == "smoke"  # conftest.py
    nb = nbformat.read(path, as_version=4)
    cells = visible_cells(nb)
    assert len(cells) >= 3, f"{path.name}: too few visible code cells"
    shown = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    client = NotebookClient(shown, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name}: the visible code does not run without the hidden cells:\n{err}")
