"""``python -m xferutils.build``: chapters executed in parallel into Jupyter Book's cache."""
import nbformat
import pytest
from jupyter_cache import get_cache

from xferutils import build
from xferutils.core.config import ParameterError


def write_nb(path, source, forced=False):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if forced:
        nb.metadata["mystnb"] = {"execution_mode": "force"}
    nbformat.write(nb, path)
    return path


def test_pending_skips_forced_notebooks_and_puts_the_longest_first(tmp_path):
    cache = get_cache(str(tmp_path / "cache"))
    paths = [write_nb(tmp_path / "zz_extra.ipynb", "1"), write_nb(tmp_path / "07_negative_results.ipynb", "2"),
             write_nb(tmp_path / "04_shared_layers.ipynb", "3"), write_nb(tmp_path / "ledger.ipynb", "4", forced=True)]
    assert [p.stem for p in build.pending(paths, cache)] == ["04_shared_layers", "07_negative_results", "zz_extra"]


def test_executed_chapters_are_found_in_the_cache_as_jupyter_book_looks_them_up(tmp_path):
    cache = get_cache(str(tmp_path / "cache"))
    nb_path = write_nb(tmp_path / "01_x.ipynb", "import os\nprint('threads', os.environ['XFER_THREADS'])")
    build.run_chapters([nb_path], cache, workers=1, timeout=120, cores=3)
    assert build.pending([nb_path], cache) == []  # a rebuild would take it from the cache
    record, merged = cache.merge_match_into_notebook(nbformat.read(nb_path, as_version=4))
    assert "threads 3" in merged.cells[0].outputs[0]["text"]  # one worker gets every core
    assert cache.get_cache_record(record).data["execution_seconds"] > 0


def test_a_failing_chapter_stops_before_the_book(tmp_path):
    cache = get_cache(str(tmp_path / "cache"))
    bad = write_nb(tmp_path / "02_bad.ipynb", "raise ValueError('broken chapter')")
    with pytest.raises(RuntimeError, match="broken chapter"):
        build.run_chapters([bad], cache, workers=1, timeout=120)
    assert build.pending([bad], cache) == [bad]  # nothing half-written into the cache


def test_dry_run_prints_the_plan(capsys):
    assert build.main(["--dry-run", "-W"]) == 0
    out = capsys.readouterr().out
    assert "chapters to execute" in out and "jupyter-book build . -W" in out
    with pytest.raises(ParameterError, match="--workers"):
        build.main(["--workers", "-1", "--dry-run"])
