"""Tests of xferutils.chapters.shared_layers (chapter 4): a whole small case through the
chapter's result, its cases and presets, the diagram, the base targets."""
import json
import math

import matplotlib.pyplot as plt
import pytest

import xferutils as xu
from xferutils.chapters import shared_layers as sl
from xferutils.core import sharing
from xferutils.core.config import ParameterError
from xferutils.core.data import Split

SMALL = sharing.make_case("small")
SEEDS = [0, 1]


TINY = dict(base_per_class=30, shared_per_class=20, val_per_class=10)
QUICK = sharing.Recipe(epochs=2, lr=2e-3, batch_size=64, patience=1)


def run_small_case(mnist, s):
    """The chapter's method cell on a tiny small case (what the notebook runs per case)."""
    test = Split(mnist.test.x[:600], mnist.test.y[:600])
    pools = sharing.case_pools(mnist.train, SMALL, data_seed=0, **TINY)
    bases = sharing.trained_bases(SMALL, pools, test, SEEDS, QUICK)
    feats = sharing.case_features(bases, pools, test, SMALL)
    outcomes = {a: sharing.train_approach(a, feats.train, SMALL, SEEDS, s, val=feats.val) for a in sharing.APPROACHES}
    n = s.n_bridge
    return sl.CaseResult(case=SMALL, seeds=SEEDS, bases=bases, features=feats, outcomes=outcomes, n_bridge=n,
                         probe=sharing.probe(feats, SMALL, SEEDS, n), scratch=sharing.train_scratch(SMALL, pools, test, SEEDS, QUICK),
                         few_shot=sharing.train_few_shot(SMALL, pools, test, SEEDS, n, QUICK),
                         pixels=sharing.pixel_baselines(SMALL, pools, test, SEEDS, n))


def test_case_pieces_smoke(mnist):
    s = sharing.Settings(epochs=3, patience=1, batch_size=64, width=16, proj_dim=8, n_bridge=5, memory_slots=4,
                    max_extend=0)
    r = run_small_case(mnist, s)
    assert isinstance(r.case, sharing.Case) and isinstance(r.bases, sharing.Bases)
    assert isinstance(r.features, sharing.CaseFeatures) and isinstance(r.scratch, sharing.Scratch)
    assert isinstance(sharing.case_pools(mnist.train, SMALL, data_seed=0, **TINY), sharing.Pools)
    assert set(r.metrics) == set(sharing.APPROACHES)
    assert r.scratch.trainable == xu.models.count_parameters(xu.models.wide_nn(4))
    assert len(r.scratch.metrics["transfer"]) == 2 and not math.isnan(r.scratch.seconds)
    assert r.few_shot is not None and len(r.few_shot.metrics["transfer"]) == 2
    assert all(1 <= e <= 2 for e in r.base_epochs1 + r.base_epochs2)
    assert r.base_per_class == TINY["base_per_class"]
    assert r.metrics["alignment"]["weight"] in s.grid and r.metrics["none"]["weight"] is None
    assert set(r.metrics["alignment"]["scores"]) == set(s.grid)
    assert set(r.pixels) == set(sharing.PIXEL_BASELINES)
    assert all(v["isolation"] == [0.0, 0.0] for v in r.pixels.values())  # no output for the donor's digits
    with pytest.raises(ParameterError, match="outcomes"):
        sl.CaseResult(case=SMALL, seeds=SEEDS, bases=r.bases, features=r.features, outcomes={}, probe=r.probe,
                      scratch=r.scratch)
    sweep = sl.bridge_sweep(r, [1, 3], s)
    assert set(sweep) == {1, 3} and len(sweep[1]["transfer"]) == 2
    both = sl.bridge_sweep(r, [1, 5], s, donors=(True, False))
    assert set(both) == {(1, True), (1, False), (5, True), (5, False)}
    op = sl.operating_point(r, [0.0, 1.0, 1e6])
    assert op["at_reach"] is None or op["b_reach"] in op["offsets"]
    assert op["test"][1e6]["transfer"] == [1.0, 1.0]  # a huge bias calls everything the transfer digit

    fam = xu.claims.Family("ch4 test", questions=sl.questions(["small"]))
    gate = sl.register_chance(fam, {"small": r})
    assert set(gate) == {("small", a) for a in sharing.APPROACHES}
    gate = {**gate, ("small", "none"): False, ("small", "bridging"): True}
    sl.register_claims(fam, {"small": r}, both, op, gate)
    v = fam.verdicts()
    assert "000-crit-isolation-small-none" not in v and "000-crit-isolation-small-bridging" in v
    assert "trivial" in sl.criteria_table({"small": r}, v) and "trivial" in sl.main_table(r, gate)
    assert "ch4-bridging-vs-pixels-small" in v
    assert {"000-bridging-94", "000-zero-information", "ch4-bridging-vs-few-shot-small",
            "000-crit-faster-small-bridging", "ch4-donor-helps", "ch4-base1-target-small",
            "ch4-base2-target-small"} <= set(v)
    assert all(x.verdict in ("supported", "contradicted", "equivalent", "not shown") for x in v.values())
    for table in (sl.bases_table({"small": r}), sl.main_table(r), sl.probe_table({"small": r}),
                  sl.align_table({"small": r}), sl.criteria_table({"small": r}, v), sl.claims_table(v),
                  sl.cases_table([SMALL])):
        header = table.splitlines()[0]
        assert 2 <= header.count("|") - 1 <= 7  # at most 7 columns
        assert "nan" not in table
    assert "✓" in sl.criteria_table({"small": r}, v) or "✗" in sl.criteria_table({"small": r}, v) \
        or "?" in sl.criteria_table({"small": r}, v)
    words = sl.prose({"small": r}, v, both, op)
    assert words["w_bridge94"] in ("reproduces", "does not reproduce", "neither confirms nor refutes")
    assert words["n_cells"] == len(sharing.APPROACHES)
    saved = xu.results._plain(sl.chapter_results({"small": r}, both, op, s, {"base_per_class": 30}))
    import json
    data = json.loads(json.dumps(saved))
    assert "small" in data["cases"]
    assert [x["target"] for x in data["references"]] == [99.0, 99.0]
    assert all(len(x["measured"]) == 2 and x["source"] for x in data["references"])
    assert {x["name"] for x in data["baselines"]} == set(sharing.PIXEL_BASELINES.values())
    assert all(len(x["measured"]) == 2 and "5 labelled images of digit 3" in x["setting"] for x in data["baselines"])
    for fig in (sl.transfer_figure({"small": r}), sl.shares_figure({"small": r}), sl.bridge_figure(r, both),
                sl.tradeoff_figure(op), sl.bases_figure({"small": r})):
        assert fig.get_size_inches()[0] <= 10
        plt.close(fig)


def test_make_cases_and_preset_settings():
    assert [c.name for c in sl.make_cases(["small", "large"])] == ["small", "large"]
    assert [c.name for c in sl.make_cases("[\'medium\']")] == ["medium"]
    assert sl.make_cases("small")[0] == SMALL
    custom = sl.make_cases(["small"], "[0, 1, 7]", "[1, 6, 7, 9]", 6)[0]
    assert custom.digits1 == (0, 1, 7) and custom.transfer == 6
    with pytest.raises(ParameterError, match="test_cases"):
        sl.make_cases([])
    assert sharing.preset_settings("book", 50).n_bridge == 50
    with pytest.raises(ParameterError, match="n_bridge"):
        sharing.preset_settings("book", sharing.SCALES["book"]["shared_per_class"] + 1)
    with pytest.raises(ParameterError, match="preset"):
        sharing.preset_settings("huge")


def test_diagram_names_the_parts():
    fig = sl.diagram_figure(SMALL)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "frozen" in texts and "shared layers" in texts and "P₁" in texts and "P₂" in texts
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 9
    plt.close(fig)


def test_base_targets_follow_the_number_of_digits():
    assert sl.base_target([0, 1, 2]) == sl.BASE_TARGET
    for digits in ([0, 1, 2, 3, 4], list(range(2, 10))):
        target, source = sl.base_target(digits)
        assert target == sl.LENET_300_100[0] < sl.BASE_TARGET[0] and "Han et al. 2015" in source
    with pytest.raises(ParameterError, match="digits"):
        sl.base_target([])


def _claim(cid: str, verdict: str, values: list[float], claimed: float = 11.0) -> dict:
    return {"id": cid, "verdict": verdict, "values": values, "n": len(values), "unit": "%",
            "measured": sum(values) / len(values), "claimed": claimed, "text": f"text of {cid}"}


def test_reversal_note_explains_a_flip_with_both_runs_numbers_and_the_bases(tmp_path):
    ours = [_claim("ch4-chance-large-prototypes", "contradicted", [4.0, 5.0]),
            _claim("ch4-base1-target-large", "contradicted", [97.0, 97.5], 98.36),
            _claim("ch4-base2-target-large", "contradicted", [96.0, 96.5], 98.36),
            _claim("ch4-chance-small-none", "supported", [50.0, 60.0])]
    theirs = [_claim("ch4-chance-large-prototypes", "supported", [1.0, 80.0, 20.0]),
              _claim("ch4-base1-target-large", "equivalent", [98.3, 98.3, 98.3], 98.36),
              _claim("ch4-base2-target-large", "contradicted", [97.2, 97.2, 97.2], 98.36),
              _claim("ch4-chance-small-none", "supported", [55.0, 56.0, 57.0])]
    (tmp_path / "04_shared_layers").mkdir()
    (tmp_path / "04_shared_layers" / "full.json").write_text(json.dumps({"claims": theirs}))
    note = sl.reversal_note("book", ours, root=tmp_path)
    assert note.count("**") == 2 and "prototypes" in note and "small" not in note  # only the flip
    assert "contradicted at `book` and supported at `full`" in note
    assert "4.5 % over 2 seeds against 33.7 % over 3" in note and "from 1.0 to 80.0 %" in note
    assert "97.25 and 96.25 % at `book`, 98.30 and 97.20 % at `full` (expected 98.36 %)" in note
    assert "how well the bases were trained" in note
    theirs[0]["verdict"] = "not shown"
    (tmp_path / "04_shared_layers" / "full.json").write_text(json.dumps({"claims": theirs}))
    assert sl.reversal_note("book", ours, root=tmp_path) == ""


def test_reversal_note_does_not_blame_the_bases_when_they_match(tmp_path):
    base = [_claim(f"ch4-base{i}-target-large", "supported", [98.5, 98.5], 98.36) for i in (1, 2)]
    ours = [_claim("ch4-chance-large-none", "contradicted", [4.0, 5.0]), *base]
    theirs = [_claim("ch4-chance-large-none", "supported", [30.0, 40.0, 50.0]), *base]
    (tmp_path / "04_shared_layers").mkdir()
    (tmp_path / "04_shared_layers" / "full.json").write_text(json.dumps({"claims": theirs}))
    note = sl.reversal_note("book", ours, root=tmp_path)
    assert "own variation over seeds" in note and "how well the bases" not in note


def _short(label="Network 2 (large)", gap=1.9, case="large", role=2, target=98.36):
    """One entry of sl.short_networks."""
    return sl.Shortfall(label, 1687, 0.3, 4, gap, case, role, target)


def test_short_words_say_the_gap_and_every_network_reaching_its_target():
    assert sl.short_words([]) == "Every network reaches its target on average"
    text = sl.short_words([_short(gap=1.9), _short("Network 1 (large)", gap=1.1, role=1)])
    assert "1.1 points or more" in text and "0.30 points" in text and "1,687 images per digit" in text


def test_size_words_tell_whether_more_images_close_each_gap():
    curves = {"large": {1687: (97.1, 96.5), 3375: (98.1, 97.6), 4900: (98.6, 97.9)}}
    short = [_short("Network 1 (large)", role=1), _short("Network 2 (large)", role=2)]
    text = sl.size_words(short, curves)
    one, two = text.split("; ")
    assert one.startswith("Network 1 (large) reaches 97.10 % with 1,687") and "more images close its gap" in one
    assert "still 0.46 points short of 98.36 %" in two and "images alone do not close" in two
    assert sl.size_words(short, {}) .startswith("No base stays below")


def test_references_carry_the_size_curve_only_where_a_base_falls_short(mnist):
    s = sharing.Settings(epochs=1, patience=1, batch_size=64, width=16, proj_dim=8, n_bridge=5, memory_slots=4,
                         max_extend=0)
    r = run_small_case(mnist, s)
    results = {"small": r}
    curves = {"small": {30: (10.0, 20.0), 60: (30.0, 40.0)}}
    refs = sl.references_list(results, curves)
    assert len(refs) == 2
    for i, ref in enumerate(refs):
        short = sum(ref["measured"]) / len(ref["measured"]) < ref["target"]
        assert ("by_images" in ref) == short
        if short:
            assert ref["by_images"] == {"30": curves["small"][30][i], "60": curves["small"][60][i]}
    assert all("by_images" not in ref for ref in sl.references_list(results))
    fig = sl.size_figure(curves, results)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 4  # two curves, one target (99 % for both), the pool
    plt.close(fig)
    empty = sl.size_figure({}, results)
    assert not empty.axes[0].axison
    plt.close(empty)


def test_probe_fit_words_claim_convergence_only_when_the_gradient_vanished():
    done = sl.probe_fit_words({"iterations": [42.0, 42.0], "grad_norm": [3e-8, 3e-8]})
    assert done.startswith("to convergence (42 L-BFGS iterations") and "not converged" not in done
    capped = sl.probe_fit_words({"iterations": [500.0], "grad_norm": [2e-3]})
    assert capped.startswith("as far as L-BFGS got (500 L-BFGS iterations") and capped.endswith("not converged)")
