"""Tests of xferutils.chapters.numpy_strategies (chapter 2): document 004's data, its four
strategies, the rate grid, and the page's tables, figures and claims."""
import numpy as np
import pytest

import xferutils as xu
from xferutils.chapters import numpy_strategies as nps
from xferutils.core import numpynet as npn
from xferutils.core.config import ParameterError


def fake_run(acc: dict, as_is: float, oracle: float, curve_len: int = 10) -> dict:
    """A compare_strategies result whose strategies end at the given held-out accuracies."""
    hists = {}
    for k, a in acc.items():
        curve = list(np.linspace(a / 2, a, curve_len))
        hists[k] = npn.NumpyHistory(loss=[1.0] * curve_len, train_acc=[1.0] * curve_len, val_loss=[1.0] * curve_len,
                               test_acc=curve, best_epoch=curve_len)
    return {"histories": hists, "source_as_is": (as_is, as_is), "oracle": oracle,
            "epochs": {"source": 5, "oracle": 5}, "sizes": {"source": 1000, "target": 100, "pool": 1000, "val": 200, "test": 1000}}


def test_make_transfer_data_protocols():
    a = nps.make_transfer_data(3, "seed004")
    b = nps.make_transfer_data(3, "shifted")
    assert a.source[0].shape == (1000, 10) and a.target[0].shape == (100, 10)
    assert a.source_val[0].shape == a.target_val[0].shape == (100, 10)
    assert a.target_test[0].shape == (1000, 10) and a.target_pool[0].shape == (1000, 10)
    assert not np.allclose(a.source_centers, a.target_centers)
    np.testing.assert_array_equal(b.source_centers, b.target_centers)
    again = nps.make_transfer_data(3, "shifted")
    np.testing.assert_array_equal(again.target[0], b.target[0])
    # every class appears equally often
    assert np.bincount(a.target[1]).tolist() == [20] * 5
    with pytest.raises(ParameterError, match="protocol"):
        nps.make_transfer_data(0, "fresh")


def test_compare_strategies_source_model_transfers_only_under_the_shifted_protocol():
    out = {p: nps.compare_strategies(nps.make_transfer_data(0, p), 0, max_epochs=30, patience=10)
           for p in nps.PROTOCOLS}
    assert set(out["shifted"]["histories"]) == set(nps.STRATEGIES)
    assert out["shifted"]["source_as_is"][1] > 0.9  # same centres: the source model works as is
    assert out["seed004"]["source_as_is"][1] < 0.6  # fresh centres: about chance (0.2)
    h = out["shifted"]["histories"]["From scratch"]
    assert 1 <= h.best_epoch <= len(h.test_acc) <= 30
    assert 1 <= out["shifted"]["epochs"]["source"] <= 30 and 0.0 <= out["seed004"]["oracle"] <= 1.0


def test_the_corrected_protocol_has_headroom():
    """With the chapter's distortion the source model as is falls clearly below the oracle."""
    runs = [nps.compare_strategies(nps.make_transfer_data(s, "shifted", noise=2.0, shift=0.5, n_val=200), s,
                                   max_epochs=60, patience=15) for s in (0, 1, 2)]
    summ = nps.summarise({"c": runs})["c"]
    assert summ["oracle"].mean - summ["source_as_is"].mean > 0.1


def test_add_claims_decides_known_outcomes_through_the_family():
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(8):  # scratch clearly worst, FT clearly best, FE and DFT tied
        noise = rng.normal(0, 0.005, 4)
        runs.append(fake_run({"From scratch": 0.60 + noise[0], "Feature extraction": 0.75 + noise[1],
                              "Full fine-tuning": 0.85 + noise[2], "Discriminative FT": 0.75 + noise[3]},
                             as_is=0.55, oracle=0.9))
    summ = nps.summarise({"c": runs})["c"]
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    ids = nps.add_claims(fam, summ)
    assert len(ids) == len(set(ids)) == 16 and len(fam) == 14  # two pairs asked both ways: one test each
    assert set(fam.mirrors) == {"004-fe-best-vs-ft", "004-dft-beats-ft"}
    v = fam.verdicts()
    assert v["004-transfer-beats-scratch-fe"].verdict == "supported"
    assert v["004-ft-highest-vs-fe"].verdict == "supported"
    assert v["004-fe-best-vs-ft"].verdict == "contradicted"
    assert v["004-dft-beats-ft"].verdict == "contradicted"
    assert v["ch2-np-headroom"].verdict == "supported" and v["ch2-np-scratch-beats-as-is"].verdict == "supported"
    # FE and DFT have the same mean and noise of 0.5 points: shown equivalent within ±1 point
    assert v["004-fe-best-vs-dft"].verdict == "equivalent"
    assert all(v[i].p_adjusted >= v[i].p for i in ids if v[i].p is not None)
    assert all(v[i].question == "ch2-rank" for i in ids if i.startswith(("004-fe-best", "004-ft-highest")))


def test_tables_and_glue_values():
    runs = [fake_run({k: 0.7 for k in nps.STRATEGIES}, 0.5, 0.9) for _ in range(3)]
    summ = nps.summarise({"a": runs, "b": runs})
    table = nps.results_table(summ)
    assert table.count("\n") == 3 and table.splitlines()[0].count("|") - 1 <= 7
    assert "50.0\u00a0±\u00a00.0" in table and "**70.0\u00a0±\u00a00.0**" in table
    assert "10\u00a0±\u00a00" in nps.budget_table(summ)
    g = nps.glue_values(summ, "a", "b")
    assert g["np_asis_corr"] == pytest.approx(50.0) and g["np_oracle_corr"] == pytest.approx(90.0)
    assert g["np_best_corr"] == g["np_worst_corr"] == pytest.approx(70.0)
    assert g["np_train_fit_004"] == nps.fit_words(g["np_train_min_004"])
    assert (g["np_n_target"], g["np_n_pool"], g["np_n_source"]) == (100, 1000, 1000)


def test_fit_words_say_perfectly_only_at_100_percent():
    assert nps.fit_words(100.0) == "perfectly (100 %)"
    assert nps.fit_words(99.96) == "to at least 99.9 %"
    assert nps.fit_words(97.25) == "to at least 97.2 %"


def test_baselines_on_the_same_target_samples():
    data = nps.make_transfer_data(0, "shifted", noise=2.0, shift=0.5)
    out = nps.compare_strategies(data, 0, max_epochs=3, patience=2)
    b = out["baselines"]
    assert b["inputs"] == xu.baselines.pixel_logistic(data.target, data.target_test, seed=0)
    assert set(b) == {"inputs", "random", "prototypes", "inputs_pool"} and all(0 <= v <= 1 for v in b.values())
    assert b["inputs_pool"] > b["inputs"] - 0.05  # ten times the samples: no worse
    summ = nps.summarise({"c": [out, out]})
    table = nps.baseline_table(summ)
    assert "| logistic regression on the inputs |" in table and table.count("\n") == 1 + 4 + 3 + 2
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    ids = nps.add_claims(fam, summ["c"])
    assert {i for i in ids if i.startswith("ch2-baseline-")} == {
        f"ch2-baseline-np-{s}-vs-inputs" for s in ("scratch", "fe", "ft", "dft")}
    assert nps.references_list(summ)[0]["target"] == pytest.approx(100 * b["inputs_pool"])
    assert len(nps.baselines_list(summ)) == 3
    # the sizes quoted in claims and settings are those of the data that ran
    assert summ["c"]["sizes"] == {"source": len(data.source[1]), "target": len(data.target[1]),
                                  "pool": len(data.target_pool[1]), "val": len(data.target_val[1]),
                                  "test": len(data.target_test[1])}
    assert all(f"{len(data.target[1])} target samples" in b["setting"] for b in nps.baselines_list(summ))


def test_figures_have_at_most_two_panels_per_row_and_percent_units():
    import matplotlib

    matplotlib.use("Agg")
    runs = [nps.compare_strategies(nps.make_transfer_data(s, "shifted"), s, max_epochs=4, patience=2)
            for s in (0, 1)]
    fig = nps.strategy_figure({"a": runs, "b": runs})
    assert len(fig.axes) == 4 and fig.get_size_inches()[0] <= 10
    assert fig.axes[0].get_title().startswith("a:") and fig.axes[2].get_title().startswith("b:")
    assert len(fig.axes[0].get_lines()) == 2 * len(nps.STRATEGIES)  # held-out and train curves
    assert all("%" in ax.get_ylabel() for ax in fig.axes)
    fig2 = nps.protocol_figure(0, {"x": {"protocol": "seed004"}, "y": {"protocol": "shifted"}})
    assert len(fig2.axes) == 2


def test_rates_chosen_on_validation_over_seeds():
    runs = [nps.compare_strategies(nps.make_transfer_data(s, "shifted", noise=2.0, shift=0.5), s,
                                   max_epochs=15, patience=5, rates=[0.0, 0.1]) for s in (0, 1)]
    table = nps.rate_table(runs)
    assert set(table) == set(nps.STRATEGIES) and all(set(t) == {0.0, 0.1} for t in table.values())
    # rate 0 trains nothing: from scratch stays at its random start, which a rate of 0.1 beats
    assert table["From scratch"][0.1] < table["From scratch"][0.0]
    h = runs[0]["grid"]["From scratch"][0.0]
    assert len(set(h.val_loss)) == 1  # nothing moved
    chosen = nps.select_rates(runs)
    assert chosen["From scratch"] == 0.1
    for name, t in table.items():  # the choice is the lowest mean validation loss
        assert t[chosen[name]] == min(t.values())
        mean = np.mean([r["grid"][name][chosen[name]].val_loss[r["grid"][name][chosen[name]].best_epoch - 1]
                        for r in runs])
        assert abs(t[chosen[name]] - mean) < 1e-12
    picked = nps.with_rates(runs, chosen)
    assert all(p["histories"][k] is r["grid"][k][chosen[k]] for p, r in zip(picked, runs) for k in chosen)
    assert "**" in nps.rates_markdown(chosen, table) and "document 004" in nps.rates_markdown(chosen, table)
    assert nps.edge_rates({"A": 0.01, "B": 0.1, "C": 1.0}, (0.01, 0.1, 1.0)) == {"A": "lowest", "C": "highest"}
    assert "inside" in nps.edge_words({"B": 0.1}, (0.01, 0.1, 1.0))
    assert "a (1)" not in nps.edge_words({"A": 1.0}, (0.01, 1.0)) and "highest rate (1)" in nps.edge_words({"A": 1.0}, (0.01, 1.0))
    with pytest.raises(ParameterError, match="not run"):
        nps.with_rates(runs, {"From scratch": 0.3})
    with pytest.raises(ParameterError, match="rates"):
        nps.rate_table([{"histories": {}}])
    with pytest.raises(ParameterError, match="rates"):
        nps.compare_strategies(nps.make_transfer_data(0), 0, max_epochs=2, patience=1, rates=[])
    with pytest.raises(ParameterError, match="rates"):
        nps.compare_strategies(nps.make_transfer_data(0), 0, max_epochs=2, patience=1, rates=[-1.0])


def test_adding_a_rate_to_the_grid_changes_no_other_run():
    data = nps.make_transfer_data(0, "shifted", noise=2.0, shift=0.5)
    one = nps.compare_strategies(data, 0, max_epochs=6, patience=3, rates=[0.1])
    two = nps.compare_strategies(data, 0, max_epochs=6, patience=3, rates=[0.03, 0.1])
    for name in nps.STRATEGIES:
        assert one["grid"][name][0.1].val_loss == two["grid"][name][0.1].val_loss
        assert two["grid"][name][0.03].val_loss != two["grid"][name][0.1].val_loss
    assert one["oracle"] == two["oracle"] and one["source_as_is"] == two["source_as_is"]


def test_oracle_values_say_which_way_the_gaps_go():
    from xferutils.core.metrics import spread
    row = {"oracle": spread([0.80, 0.82]), "baselines": {"inputs_pool": spread([0.90, 0.90]),
                                                          "inputs": spread([0.70, 0.72])}}
    row |= {k: {"test": spread([0.60 + 0.02 * i] * 2)} for i, k in enumerate(nps.STRATEGIES)}
    v = nps.oracle_values({"s": row}, "s")
    assert v["word"] == "falls short of" and abs(v["gap"] - 9.0) < 1e-9
    assert v["best"] == nps.STRATEGIES[-1].lower() and abs(v["best_acc"] - 66.0) < 1e-9
    assert v["small_word"] == "above" and "none of the four" in v["reading"]
    row["baselines"]["inputs"] = spread([0.50, 0.50])
    w = nps.oracle_values({"s": row}, "s")
    assert w["small_word"] == "below" and w["reading"].startswith(nps.STRATEGIES[-1].lower())


def test_transfer_data_holds_every_split_with_matching_shapes():
    d = nps.make_transfer_data(0, "seed004")
    assert isinstance(d, nps.TransferData)
    for name in ("source", "source_val", "target", "target_val", "target_test", "target_pool"):
        x, y = getattr(d, name)
        assert x.ndim == 2 and len(x) == len(y) and x.shape[1] == d.source[0].shape[1]
    assert d.source_centers.shape == d.target_centers.shape
