"""Chapter 7's package code: document 001's broken and fixed data, early stopping, the chance test."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from xferutils.chapters import negative_results as ng
from xferutils.core.config import ParameterError


def test_as_run_protocol_draws_new_centres_per_data_set():
    broken = ng.doc001_data(0, "as_run", noise=0.5)
    fixed = ng.doc001_data(0, "fixed", noise=0.5)
    # the nearest class mean of the training data: perfect on the fixed task, chance-like as run
    assert ng.nearest_centre_accuracy(fixed) > 0.95
    accs = [ng.nearest_centre_accuracy(ng.doc001_data(s, "as_run", noise=0.5)) for s in range(12)]
    assert abs(np.mean(accs) - 0.2) < 0.1
    assert broken.train[0].shape == (100, 10) and broken.test[0].shape == (1000, 10)
    assert sorted(np.unique(fixed.val[1])) == [0, 1, 2, 3, 4]


def test_source_data_does_not_depend_on_the_shift():
    a, b = ng.doc001_data(3, "fixed", shift=0.0), ng.doc001_data(3, "fixed", shift=2.0)
    np.testing.assert_array_equal(a.source[0], b.source[0])
    assert not np.allclose(a.test[0], b.test[0])


@pytest.mark.parametrize("kw", [{"protocol": "broken"}, {"shift": -1.0}, {"n_target": 2}])
def test_bad_data_parameters(kw):
    with pytest.raises(ParameterError):
        ng.doc001_data(0, **kw)


def test_fit_keeps_the_best_validation_epoch():
    task = ng.doc001_data(0, "fixed", noise=2.0)
    rng = np.random.default_rng(0)
    net = ng.NumpyNet([10, 8, 5], rng)
    best = ng.fit_to_accuracy(net, task.train, task.val, lr=0.1, rng=rng, max_epochs=40, patience=5)
    assert 0 <= best <= 40
    # retraining one more time from scratch with the same seed gives the same best epoch, and the
    # kept weights score the best validation accuracy seen on the way
    rng2 = np.random.default_rng(0)
    net2 = ng.NumpyNet([10, 8, 5], rng2)
    accs = [net2.accuracy(*task.val)]
    for _ in range(best):
        ng.train(net2, *task.train, epochs=1, lr=0.1, batch_size=16, rng=rng2)
        accs.append(net2.accuracy(*task.val))
    assert net.accuracy(*task.val) == pytest.approx(max(accs))


def test_strategy_run_freezes_features_at_mult_zero():
    task = ng.doc001_data(1, "fixed", noise=1.0)
    src = ng.pretrain(task, 1, epochs=5)
    before = {k: v.copy() for k, v in src.params.items()}
    r = ng.strategy_run(src, task, 1, mult=0.0, epochs=3)
    assert set(r) == {"train", "val", "test", "epochs"} and r["epochs"] == 3
    for k, v in before.items():  # the source network itself is never modified
        np.testing.assert_array_equal(src.params[k], v)


def test_experiments_shapes_and_lr_choice():
    srcs = ng.pretrain_all([0, 1], "fixed", noise=1.0)
    e2 = ng.experiment2(srcs, "fixed", [0.1, 1.0], noise=1.0, epochs=2)
    assert set(e2) == {0.1, 1.0} and all(len(v) == 2 for v in e2.values())
    e3 = ng.experiment3(srcs, "fixed", [0.0, 3.0], noise=1.0, lrs=(0.01, 0.1), epochs=2)
    assert set(e3) == {"transfer", "scratch", "source"} and set(e3["scratch"]) == {0.0, 3.0}
    assert all(r["lr"] in (0.01, 0.1) for runs in e3["scratch"].values() for r in runs)
    assert len(ng.per_seed(e3["transfer"])) == 2


def test_chance_p_value_matches_the_binomial():
    assert ng.chance_p_value(10, 10, 2) == pytest.approx(2 ** -10)
    assert ng.chance_p_value(0, 7, 5) == pytest.approx(1.0)
    # P(X >= 2), X ~ Bin(3, 1/5) = 3·(1/25)·(4/5) + 1/125
    assert ng.chance_p_value(2, 3, 5) == pytest.approx(3 * 0.04 * 0.8 + 0.008)
    assert ng.chance_p_value(300, 1000, 5) < 1e-10 < ng.chance_p_value(210, 1000, 5)
    assert math.isfinite(ng.chance_p_value(5000, 10000, 5))


@pytest.mark.parametrize("args", [(5, 4, 5), (1, 0, 5), (1, 10, 1)])
def test_chance_p_value_refuses_bad_counts(args):
    with pytest.raises(ParameterError):
        ng.chance_p_value(*args)


def test_zero_shot_the_label_is_missing_not_the_information():
    r = ng.zero_shot(0, n_per_class=60)
    assert r["zero_shot"] <= 0.05 and r["probe"] >= 0.6 and r["seen_acc"] > 0.9
    with pytest.raises(ParameterError, match="unseen"):
        ng.zero_shot(0, unseen=1)


def test_figures():
    fig = ng.pipeline_diagram()
    assert len(fig.axes) == 2 and fig.get_figwidth() <= 10
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "draw centres B" in texts and texts.count("draw centres A") == 3
    plt.close(fig)
    runs = {"as run": {0.1: [0.2, 0.21], 1.0: [0.19, 0.2]}}
    fig = ng.doc001_figure(runs, {"fixed": {0.0: [0.8, 0.9], 3.0: [0.7, 0.6]}}, 0.2)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "test accuracy (%)"
    plt.close(fig)


def test_claims_table_reads_only_claims_by_id():
    claims = {"04_shared_layers": {"000-no-zero-shot": {"measured": 0.0, "claimed": 0.1, "n": 5,
                                                        "verdict": "supported", "label": "supported"}},
              "05_what_works": {"000-few-shot-acceleration": {"verdict": "supported", "n": 5},
                                "000-few-shot-other": {"verdict": "not shown", "n": 5}}}
    md = ng.claims_table(["000-no-zero-shot", "000-distillation", "000-few-shot"], claims)
    assert "supported ({doc}`Chapter 4 <04_shared_layers>`)" in md
    assert "not measured in this build" in md and md.count("\n") == 4
    assert "not shown: 1 of 2, supported: 1 of 2" in md and "2 parts" in md


def test_claims_table_refuses_unregistered_ids():
    with pytest.raises(ParameterError, match="registry"):
        ng.claims_table(["000-made-up"], {})


def test_bayes_ceiling_bounds_what_the_class_means_reach():
    accs = [(ng.bayes_accuracy(t), ng.nearest_centre_accuracy(t))
            for t in (ng.doc001_data(s, "fixed", noise=2.0, n_target=25) for s in range(6))]
    assert np.mean([b for b, _ in accs]) > np.mean([m for _, m in accs])  # estimated means lose to the true ones
    assert ng.bayes_accuracy(ng.doc001_data(0, "fixed", noise=0.1, shift=1.0)) == 1.0  # transform undone
    with pytest.raises(ParameterError, match="fixed"):
        ng.bayes_accuracy(ng.doc001_data(0, "as_run"))


def test_source_as_is_needs_the_same_classes():
    fixed, broken = ng.doc001_data(0, "fixed", noise=0.5, shift=0.0), ng.doc001_data(0, "as_run", noise=0.5)
    src = ng.pretrain(fixed, 0, epochs=30)
    assert ng.as_is(src, fixed)["test"] > 0.9 and ng.as_is(src, fixed)["epochs"] == 0.0
    assert ng.as_is(src, broken)["test"] < 0.7  # other centres: the source's classes mean nothing there


def test_experiment3_reports_the_source_as_is_and_the_ceiling():
    sources = ng.pretrain_all([0, 1], "fixed", noise=2.0, epochs=5)
    out = ng.experiment3(sources, "fixed", [0.0], noise=2.0, lrs=[0.1], max_epochs=3, n_target=25)
    assert set(out) == {"transfer", "scratch", "source"} and len(out["source"][0.0]) == 2
    assert all(0.0 <= r["test"] <= r["bayes"] + 0.1 for r in out["source"][0.0])
    rows = ng.baselines_list(out)
    assert [r["name"] for r in rows] == ["source model as is", "ceiling (Bayes: true centres, transform undone)"]
    assert all(len(r["measured"]) == 2 and r["setting"] == "fixed task, shift 0" for r in rows)
    assert ng.lr_summary(out["transfer"][0.0], out["scratch"][0.0]) == "0.1 (2/2) / 0.1 (2/2)"
    ref = ng.references_list(out, [0, 1], noise=2.0, n_target=25)
    assert len(ref) == 1 and ref[0]["measured"] == [100 * r["test"] for r in out["source"][0.0]]
    tasks = [ng.doc001_data(s, "fixed", shift=0.0, noise=2.0, n_target=25) for s in (0, 1)]
    assert abs(ref[0]["target"] - 50 * sum(ng.source_centre_accuracy(t) for t in tasks)) < 1e-9
    assert ng.references_list({"source": {3.0: out["source"][0.0]}}, [0, 1], noise=2.0) == []
    with pytest.raises(ParameterError, match="seeds"):
        ng.references_list(out, [0], noise=2.0, n_target=25)


def test_source_centre_accuracy_is_near_perfect_on_separated_classes():
    easy = ng.doc001_data(0, "fixed", noise=0.1, shift=0.0)
    assert ng.source_centre_accuracy(easy) > 0.99
    hard = ng.doc001_data(0, "fixed", noise=20.0, shift=0.0)
    assert ng.source_centre_accuracy(hard) < 0.6


def test_lr_summary_counts_the_most_chosen_rate():
    runs = [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.1}]
    assert ng.lr_summary(runs, [{"lr": 0.01}]) == "0.1 (2/3) / 0.01 (1/1)"
    with pytest.raises(ParameterError, match="lr"):
        ng.lr_summary([{"test": 0.5}], runs)


def test_source_curve_scores_the_network_and_the_class_mean_on_the_same_points():
    curve = ng.source_curve([0, 1], [50, 100], noise=2.0, epochs=2)
    assert sorted(curve) == [50, 100]
    for v in curve.values():
        assert len(v["network"]) == len(v["class mean"]) == 2
        assert all(0.0 <= a <= 100.0 for a in v["network"] + v["class mean"])
    task = ng.doc001_data(1, "fixed", shift=0.0, noise=2.0, n_source=100)
    assert curve[100]["class mean"][1] == pytest.approx(100 * ng.source_centre_accuracy(task))
    fig = ng.source_curve_figure(curve)
    assert len(fig.axes[0].containers) == 1 and fig.axes[0].get_ylabel().startswith("gap")
    plt.close(fig)


@pytest.mark.parametrize("kw", [dict(seeds=[], sizes=[100]), dict(seeds=[0], sizes=[]), dict(seeds=[0], sizes=[2])])
def test_source_curve_refuses_bad_input(kw):
    with pytest.raises(ParameterError):
        ng.source_curve(kw["seeds"], kw["sizes"], noise=2.0, epochs=1)


def test_source_curve_words_decide_the_change_of_the_gap_by_its_paired_interval():
    def curve(lo: list[float], hi: list[float]) -> dict:
        return {1000: {"network": [90.0 - g for g in lo], "class mean": [90.0] * len(lo)},
                4000: {"network": [90.0 - g for g in hi], "class mean": [90.0] * len(hi)}}

    narrows = ng.source_curve_words(curve([3.0, 3.2, 2.8, 3.1], [1.0, 1.1, 0.9, 1.2]))
    assert narrows.startswith("the gap is 3.0 points with 1,000 source points and 1.1 with 4,000 (4 seeds, paired)")
    assert ": it narrows by 2.0 points (95 % interval" in narrows and "more data reduce" in narrows
    assert ": it widens by" in ng.source_curve_words(curve([1.0, 1.1, 0.9, 1.2], [3.0, 3.2, 2.8, 3.1]))
    noisy = ng.source_curve_words(curve([3.0, 0.0, 2.0, 1.0], [1.0, 2.5, 0.5, 2.0]))
    assert "is not shown either way at 4 seeds" in noisy and "narrows" not in noisy
    assert "an unbounded interval" in ng.source_curve_words(curve([3.0], [1.0]))  # one seed: no interval


def test_references_carry_the_source_curve_when_given():
    sources = ng.pretrain_all([0, 1], "fixed", noise=2.0, epochs=2)
    exp3 = ng.experiment3(sources, "fixed", [0.0], lrs=[0.1], noise=2.0, max_epochs=2)
    plain = ng.references_list(exp3, [0, 1], noise=2.0)
    assert len(plain) == 1 and "by_source_points" not in plain[0]
    assert plain[0]["target"] == pytest.approx(100 * np.mean(
        [ng.source_centre_accuracy(ng.doc001_data(s, "fixed", shift=0.0, noise=2.0)) for s in (0, 1)]))
    curve = {100: {"network": [80.0, 84.0], "class mean": [90.0, 92.0]}}
    (ref,) = ng.references_list(exp3, [0, 1], noise=2.0, curve=curve)
    assert ref["by_source_points"] == {"100": {"network": 82.0, "class mean": 91.0}}
    assert ng.references_list({"source": {}}, [0], noise=2.0) == []


def test_source_curve_reuses_networks_already_trained_on_the_default_source_set():
    fixed = ng.pretrain_all([0, 1], "fixed", noise=2.0, epochs=2)
    again = ng.source_curve([0, 1], [ng.SOURCE_POINTS], noise=2.0, epochs=2)
    reused = ng.source_curve([0, 1], [ng.SOURCE_POINTS], noise=2.0, epochs=2, trained=fixed)
    assert reused == again  # the same networks: the source data do not depend on the shift


def test_source_curve_at_the_chapters_n_target_is_the_reference_measurement():
    """The page quotes the source network against the class mean twice (the shift table's
    reference and the source curve at 1,000 points): with the chapter's n_target both are the same
    networks on the same test points, and one reading (curve_point) gives the one gap."""
    fixed = ng.pretrain_all([0, 1], "fixed", noise=2.0, epochs=2)
    exp3 = ng.experiment3(fixed, "fixed", [0.0], lrs=[0.1], noise=2.0, max_epochs=2, n_target=25)
    (ref,) = ng.references_list(exp3, [0, 1], noise=2.0, n_target=25)
    curve = ng.source_curve([0, 1], [ng.SOURCE_POINTS], noise=2.0, epochs=2, trained=fixed, n_target=25)
    assert curve[ng.SOURCE_POINTS]["network"] == pytest.approx(ref["measured"])
    at = ng.curve_point(curve, ng.SOURCE_POINTS)
    assert at["class mean"] == pytest.approx(ref["target"])
    assert at["gap"] == pytest.approx(ref["target"] - np.mean(ref["measured"]))
    other = ng.source_curve([0, 1], [ng.SOURCE_POINTS], noise=2.0, epochs=2, trained=fixed)  # n_target=100
    assert other[ng.SOURCE_POINTS]["network"] != curve[ng.SOURCE_POINTS]["network"]  # other test points
    with pytest.raises(ParameterError, match="not a point"):
        ng.curve_point(curve, 4000)


def test_range_words_give_the_spread_of_the_rows_not_their_mean():
    assert ng.range_words([77.48, 79.48, 78.85]) == "77.5 to 79.5 points"
    assert ng.range_words([78.04, 77.96]) == "78.0 points"
    assert ng.range_words([1.0, 2.0], "%") == "1.0 to 2.0 %"
    with pytest.raises(ParameterError):
        ng.range_words([])
