"""Every chapter notebook: one parameters cell of plain literals, no stored outputs, a results file.

The notebooks themselves are executed by nbval (``pytest`` collects ``notebooks/`` first).
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_literals(nb):
    all_cells = cells(nb)
    tagged = [c for c in all_cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: {len(tagged)} cells tagged 'parameters'"
    code = [c for c in all_cells if c["cell_type"] == "code"]
    assert code[0] is tagged[0], "the parameters cell must be the first code cell"
    tree = ast.parse("".join(tagged[0]["source"]))
    names = set()
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign), f"{nb.name}: only assignments in the parameters cell"
        ast.literal_eval(stmt.value)  # raises if not a plain literal
        names |= {t.id for t in stmt.targets}
    assert {"preset", "device"} <= names


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_outputs(nb):
    assert all("id" in c for c in cells(nb)), f"{nb.name}: cells without ids (nbformat 4.5)"
    for c in cells(nb):
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_objectives_and_exercises(nb):
    text = "".join("".join(c["source"]) for c in cells(nb) if c["cell_type"] == "markdown")
    assert "You will learn" in text and "{exercise}" in text and "{solution}" in text, nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_results_file_written_at_smoke(nb):
    """Runs after nbval executed the notebooks in this session (skips if it did not)."""
    path = Path(os.environ["XFER_RESULTS_DIR"]) / nb.stem / "smoke.json"
    if not path.exists():
        pytest.skip("notebooks were not executed in this session (run plain `pytest`)")
    assert path.stat().st_mtime >= float(os.environ["XFER_TEST_START"]) - 1
    data = json.loads(path.read_text())
    assert data["chapter"] == nb.stem and data["preset"] == "smoke"
    assert len(data) > 3, "the results file holds no results"


def test_bad_parameter_fails_before_work(tmp_path):
    """papermill with an impossible value: one clear error naming the parameter, no results."""
    env = {**os.environ, "XFER_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOKS[0]),
                           str(tmp_path / "out.ipynb"), "-p", "seed0", "-1"],
                          capture_output=True, text=True, env=env, cwd=ROOT / "notebooks")
    assert proc.returncode != 0
    assert "ParameterError" in proc.stderr and "seed0=-1 is out of range" in proc.stderr
    assert not list(tmp_path.glob("*/*.json"))
