"""The student edition: solutions gone, stubs where code is asked for, and the chapters still run."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from xferutils import student
from xferutils.core.config import ParameterError

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

MD = """## Exercises

```{exercise}
:label: chX-ex-think
Why?
```

```{solution} chX-ex-think
:class: dropdown
Because SECRET-ONE.
```

````{exercise}
:label: chX-ex-code-impl
% stub: def add(a: int, b: int) -> int:
Write `add`.
````

````{solution} chX-ex-code-impl
:class: dropdown
```python
def add(a, b):
    return a + b  # SECRET-TWO
```
````

:::{solution} chX-ex-think
SECRET-THREE
:::
Closing words."""


def _nb(md: str = MD) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", execution_count=3,
                                  outputs=[nbformat.v4.new_output("stream", text="1\n")]),
        nbformat.v4.new_markdown_cell(md),
        nbformat.v4.new_code_cell("print('SECRET-FOUR')", metadata={"tags": ["solution"]}),
    ])
    return nb


def test_solutions_are_removed_and_exercises_kept():
    out = student.strip_solutions(MD)
    assert "SECRET" not in out and "{solution}" not in out
    assert out.count("{exercise}") == 2 and "Closing words." in out and "Write `add`." in out


def test_stub_for_implementation_exercise_only():
    stubs = student.stubs(MD)
    assert [label for label, _ in stubs] == ["chX-ex-code-impl"]
    src = stubs[0][1]
    ns: dict = {}
    exec(src, ns)  # the stub is valid Python that defines the function
    with pytest.raises(NotImplementedError, match="chX-ex-code-impl"):
        ns["add"](1, 2)


def test_implementation_exercise_without_stub_line_is_an_error():
    with pytest.raises(ParameterError, match="% stub:"):
        student.stubs("```{exercise}\n:label: a-impl\nWrite it.\n```")


def test_student_notebook():
    nb = _nb()
    sn = student.student_notebook(nb)
    assert nb.cells[0].outputs, "the original is left untouched"
    assert [c.cell_type for c in sn.cells] == ["code", "markdown", "code"]
    assert sn.cells[0].outputs == [] and sn.cells[0].execution_count is None
    assert sn.cells[2].metadata["tags"] == ["student-stub"] and "def add" in sn.cells[2].source
    text = "".join(c.source for c in sn.cells)
    assert "SECRET" not in text
    nbformat.validate(sn)


@pytest.mark.parametrize("src_kind", ["missing", "empty"])
def test_bad_source_is_refused(tmp_path, src_kind):
    src = tmp_path / "nope"
    if src_kind == "empty":
        src.mkdir()
    with pytest.raises(ParameterError, match="--src"):
        student.build(src, tmp_path / "out")


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_out_inside_notebooks_is_refused(tmp_path, where):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(_nb(), src / "01_x.ipynb")
    out = {"inside": src / "student", "same": src, "parent": tmp_path}[where]
    with pytest.raises(ParameterError, match="--out"):
        student.build(src, out)
    assert sorted(p.name for p in src.iterdir()) == ["01_x.ipynb"]


def test_cli_refuses_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xferutils.student", "--out", str(ROOT / "notebooks" / "s")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--out" in proc.stderr and "outside" in proc.stderr
    assert not (ROOT / "notebooks" / "s").exists()


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    proc = subprocess.run([sys.executable, "-m", "xferutils.student", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    return out


def test_every_chapter_is_written_without_solutions(edition):
    assert sorted(p.name for p in edition.glob("*.ipynb")) == [p.name for p in CHAPTERS]
    for path in CHAPTERS:
        orig = nbformat.read(path, as_version=4)
        sn = nbformat.read(edition / path.name, as_version=4)
        nbformat.validate(sn)
        text = "\n".join(c.source for c in sn.cells)
        assert "{solution}" not in text and "{exercise}" in text, path.name
        assert all(not c.get("outputs") for c in sn.cells if c.cell_type == "code")
        # every line of every solution is gone (lines that also occur outside solutions excepted)
        outside = "\n".join(student.strip_solutions(c.source) if c.cell_type == "markdown" else c.source
                            for c in orig.cells)
        for c in orig.cells:
            if c.cell_type != "markdown":
                continue
            for name, _, _, _, body in student._blocks(c.source):
                if name == "solution":
                    for line in body:
                        if len(line.strip()) > 25 and line not in outside:
                            assert line not in text, (path.name, line)
        # the code the chapter runs is unchanged, plus the stubs
        code = [c.source for c in orig.cells if c.cell_type == "code"]
        assert [c.source for c in sn.cells if c.cell_type == "code" and
                c.metadata.get("tags") != ["student-stub"]] == code


def test_chapter_7_has_a_stub(edition):
    sn = nbformat.read(edition / "07_negative_results.ipynb", as_version=4)
    assert any(c.metadata.get("tags") == ["student-stub"] for c in sn.cells)


@pytest.mark.parametrize("name", ["07_negative_results.ipynb"])
def test_student_edition_executes_at_smoke(edition, name, tmp_path, monkeypatch):
    """conftest.py sets XFER_PRESET=smoke; results go to a temporary folder."""
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path))
    nb = nbformat.read(edition / name, as_version=4)
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    assert (tmp_path / Path(name).stem / "smoke.json").is_file()
