"""The claims ledger: a well-formed registry, and a page that builds from any results (or none)."""
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from xferutils.pages import claims, ledger
from xferutils.core.config import ParameterError
from xferutils.pages.results import save_results

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"


def test_every_entry_is_tested_by_a_chapter_or_says_why_not():
    entries = ledger.check_registry()
    assert 30 <= len(entries) <= 80
    for e in entries:
        assert (e.chapter in ledger.CHAPTERS) != bool(e.untested.strip()), e.id
        assert e.claim.strip() and e.source.startswith(e.seed + "_")
    assert {e.seed for e in entries} == set(ledger.SOURCES), "every source document has claims"


def test_registry_ids_are_unique_and_seed_prefixed():
    ids = [e.id for e in ledger.REGISTRY]
    assert len(ids) == len(set(ids))
    assert all(i[:3] in ledger.SOURCES and i[3] == "-" for i in ids)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the source documents are not beside the repository")
def test_source_files_exist():
    for name in ledger.SOURCES.values():
        assert (SEEDS / name).is_file(), name


@pytest.mark.parametrize("bad, match", [
    (ledger.Entry("009-x", "c", "03_strategies"), "seed"),
    (ledger.Entry("001-", "c", "03_strategies"), "seed"),
    (ledger.Entry("001-x", "c"), "no reason"),
    (ledger.Entry("001-x", "c", "99_nowhere"), "chapter"),
])
def test_bad_entries_are_refused(bad, match):
    with pytest.raises(ParameterError, match=match):
        ledger.check_registry([bad])


def test_duplicate_ids_are_refused():
    e = ledger.Entry("001-x", "c", "03_strategies")
    with pytest.raises(ParameterError, match="twice"):
        ledger.check_registry([e, e])


@pytest.mark.parametrize("chapter", sorted(ledger.CHAPTERS))
def test_every_chapter_registers_the_claims_the_registry_gives_it(chapter):
    """After the notebooks ran (nbval runs them at smoke before these tests), every registry entry
    of a chapter is in that chapter's results file, exactly or as ``<id>-<part>`` claims: the
    ledger never reads "not measured" for a chapter that ran."""
    from xferutils.pages.results import results_dir

    path = results_dir() / chapter / "smoke.json"  # the test session's folder (see conftest.py)
    if not path.is_file():
        pytest.skip(f"{chapter} has not run at smoke here (run the notebooks first)")
    found = {c["id"] for c in json.loads(path.read_text()).get("claims", [])}
    missing = [e.id for e in ledger.REGISTRY if e.chapter == chapter
               and e.id not in found and not any(f.startswith(e.id + "-") for f in found)]
    assert not missing, f"{chapter} does not register {missing}"


def test_chapter_7_registers_its_claims():
    """Every claim the registry says chapter 7 tests appears in chapter 7's source."""
    text = (ROOT / "notebooks" / "07_negative_results.ipynb").read_text()
    for e in ledger.REGISTRY:
        if e.chapter == "07_negative_results":
            assert f'"{e.id}' in text or f"\\\"{e.id}" in text, e.id  # the id or a part of it


def _family() -> claims.Family:
    fam = claims.Family("synthetic", questions=[claims.Question("q", "q", claims=("*",))])
    fam.direction("001-exp2-smaller-rate", "seed 001", "small rates win",
                  [0.9, 0.91, 0.92, 0.9, 0.93], [0.5, 0.52, 0.49, 0.5, 0.51])
    fam.threshold("000-bridging-94", "seed 000", "94 %", [0.7, 0.72, 0.69, 0.71, 0.7], 0.94)
    fam.value("003-lora-r16-0.1pct", "seed 003", "0.1 %", [0.0012], 0.001, tol=0.0005, exact=True)
    fam.threshold("004-made-up", "seed 004", "not in the registry", [1.0, 2.0], 0.0)
    return fam


def test_ledger_joins_results_and_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path))
    save_results("03_strategies", "smoke", {"claims": _family().evaluate()})
    # a claim registered for chapter 2 but found in chapter 3's file is still found
    (tmp_path / "04_shared_layers").mkdir()
    (tmp_path / "04_shared_layers" / "smoke.json").write_text("{not json")  # unreadable: absent
    found = ledger.load_chapter_claims("smoke")
    assert set(found) == {"03_strategies"}
    rows = {r.entry.id: r for r in ledger.ledger(found)}
    assert rows["001-exp2-smaller-rate"].status == "supported"
    assert rows["000-bridging-94"].status == "contradicted"
    assert rows["000-bridging-94"].chapter == "03_strategies"
    assert rows["003-lora-r16-0.1pct"].status == "supported"
    assert rows["001-exp2-chance"].status == ledger.NOT_MEASURED
    assert rows["002-step-optimality"].status == "untested"
    assert ledger.unregistered(found) == [("03_strategies", "004-made-up")]
    cells = ledger.row_cells(rows["001-exp2-smaller-rate"])
    assert len(cells) == len(ledger.HEADER) <= 5  # fits the page: verdict first, id under the claim
    assert cells[0] == "supported" and "`001-exp2-smaller-rate`" in cells[1]
    assert "vs" in cells[2] and "(5 seeds)" in cells[2] and cells[3].startswith("[")
    assert "(claimed 0.94)" in ledger.row_cells(rows["000-bridging-94"])[2]
    untested = ledger.row_cells(rows["002-step-optimality"])
    assert untested[0] == "untested" and "why:" in untested[1]


def test_page_builds_without_any_results(tmp_path):
    md = ledger.ledger_markdown("book", tmp_path)
    n_tested = sum(e.chapter is not None for e in ledger.REGISTRY)
    assert md.count(f"| {ledger.NOT_MEASURED} |") == n_tested
    assert md.count("| untested |") == len(ledger.REGISTRY) - n_tested
    assert all(f"Document {s}: " in md for s in ledger.SOURCES) and ".txt" not in md
    assert " nan" not in md.lower()


def test_page_lists_unregistered_claims(tmp_path):
    save_results_at(tmp_path, "03_strategies", "book", _family())
    md = ledger.ledger_markdown("book", tmp_path)
    assert "Measured but not in the registry" in md and "`004-made-up`" in md
    assert "{doc}`Chapter 3 <03_strategies>`" in md
    assert ledger.chapter_link("09_future") == "Chapter 9"


def save_results_at(root: Path, chapter: str, preset: str, fam: claims.Family) -> None:
    path = root / chapter / f"{preset}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"claims": [v.as_dict() for v in fam.evaluate()]}))


def test_bad_preset_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="preset"):
        ledger.load_chapter_claims("huge", tmp_path)


def test_registry_table_lists_reasons():
    md = ledger.registry_table()
    assert md.count("untested:") == sum(e.chapter is None for e in ledger.REGISTRY)


def test_ledger_notebook_executes(tmp_path, monkeypatch):
    """The back-matter page runs with no results at all (a fresh build) and says so."""
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path))
    nb = nbformat.read(ROOT / "notebooks" / "ledger.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    out = "".join(o.get("data", {}).get("text/markdown", "") + o.get("text", "")
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert ledger.NOT_MEASURED in out and "Error" not in out


def test_claims_split_into_parts_count_for_their_entry(tmp_path):
    fam = claims.Family("parts", questions=[claims.Question("q", "q", claims=("*",))])
    fam.direction("004-transfer-beats-scratch-fe", "seed 004", "fe", [0.9, 0.91, 0.92], [0.5, 0.52, 0.49])
    fam.direction("004-transfer-beats-scratch-ft", "seed 004", "ft", [0.5, 0.52, 0.49], [0.9, 0.91, 0.92])
    fam.threshold("000-bridging-94-at-90-retention", "seed 000", "x", [0.9, 0.91], 0.94)
    save_results_at(tmp_path, "02_framework", "book", fam)
    found = ledger.load_chapter_claims("book", tmp_path)
    rows = {r.entry.id: r for r in ledger.ledger(found)}
    row = rows["004-transfer-beats-scratch"]
    assert len(row.parts) == 2 and row.status == "contradicted: 1 of 2, supported: 1 of 2"
    assert ledger.row_cells(row)[2] == "2 parts (3 seeds)" and "`004-transfer-beats-scratch-*`" in ledger.row_cells(row)[1]
    # an exact id never takes the parts of a longer one
    assert rows["000-bridging-94"].status == ledger.NOT_MEASURED
    assert ledger.unregistered(found) == []


def test_measured_text_reads_accuracies_in_percent_and_gaps_in_points():
    cmp = {"kind": "direction", "unit": "points", "measured": 96.75, "baseline": 89.46}
    assert ledger.measured_text(cmp) == "96.8 % vs 89.5 %"  # two accuracies, compared in points
    gains = {"kind": "direction", "unit": "points of gain", "measured": 2.71, "baseline": 4.06}
    assert ledger.measured_text(gains) == "2.7 vs 4.1 points of gain"  # two gains: never "%"
    assert ledger.measured_text({"kind": "direction", "unit": "epochs", "measured": 12.0, "baseline": 15.0}) \
        == "12.0 vs 15.0 epochs"
    gap = {"kind": "threshold", "unit": "points", "measured": -0.95, "claimed": -1.0}
    assert ledger.measured_text(gap) == "−0.9 points (claimed −1.0 points)"  # the quantity is a gap
    near = {"kind": "threshold", "unit": "points", "measured": -0.962, "claimed": -1.0}
    assert ledger.measured_text(near) == "−0.96 points (claimed −1.00 points)"  # not "−1.0 (claimed −1.0)"
