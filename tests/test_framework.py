"""Tests of xferutils.chapters.framework (chapter 2): shifts, objective helpers, parameter counts, proxy A-distance."""
import numpy as np
import pytest
import torch

import xferutils as xu
from xferutils.chapters import framework as fw
from xferutils.core.config import ParameterError
from xferutils.core.data import Split


def toy_split(n_per_class=50, n_classes=3, dim=784, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = torch.rand(len(y), dim, generator=g)
    return Split(x, y)


# --- shifts -------------------------------------------------------------------------------------

def test_covariate_shift_moves_inputs_and_keeps_labels():
    s = toy_split()
    r = fw.covariate_shift(s, "rotate", 90)
    assert torch.equal(r.y, s.y) and r.x.shape == s.x.shape and not torch.allclose(r.x, s.x)
    assert torch.allclose(fw.covariate_shift(s, "noise", 0.0).x, s.x)
    with pytest.raises(ParameterError, match="kind"):
        fw.covariate_shift(s, "blur", 1.0)


def test_label_shift_hits_the_priors_and_keeps_class_conditionals():
    s = toy_split(n_per_class=80)
    out = fw.label_shift(s, [0.6, 0.3, 0.1], n=100, seed=1)
    assert torch.bincount(out.y, minlength=3).tolist() == [60, 30, 10]
    # every image is an image of its own class in the original split (P(X|Y) unchanged)
    for xi, yi in zip(out.x[:20], out.y[:20]):
        match = (s.x == xi).all(1)
        assert match.any() and s.y[match][0] == yi
    assert len({tuple(r.tolist()) for r in out.x}) == 100  # drawn without replacement
    again = fw.label_shift(s, [0.6, 0.3, 0.1], n=100, seed=1)
    assert torch.equal(again.x, out.x)


def test_label_shift_rounds_by_largest_remainder():
    out = fw.label_shift(toy_split(), [1 / 3, 1 / 3, 1 / 3], n=10, seed=0)
    assert sorted(torch.bincount(out.y).tolist()) == [3, 3, 4]


@pytest.mark.parametrize("priors", [[0.5, 0.5], [0.5, 0.6, -0.1], [0.2, 0.2, 0.2], [float("nan"), 0.5, 0.5]])
def test_label_shift_rejects_bad_priors(priors):
    with pytest.raises(ParameterError, match="priors"):
        fw.label_shift(toy_split(), priors, n=30, seed=0)


def test_label_shift_rejects_more_samples_than_a_class_has():
    with pytest.raises(ParameterError, match="class 0"):
        fw.label_shift(toy_split(n_per_class=10), [0.8, 0.1, 0.1], n=100, seed=0)


def test_prior_accuracy_matches_a_fixed_classifier_on_resampled_data():
    s = toy_split(n_per_class=100)
    pred = s.y.clone()
    pred[s.y == 1] = torch.where(torch.arange(100) < 40, 0, 1)  # class 1: 60% right; others 100%
    per_class = xu.metrics.per_class_accuracy(pred, s.y, 3)
    assert fw.prior_accuracy(per_class, [1 / 3] * 3) == pytest.approx((1 + 0.6 + 1) / 3)
    assert fw.prior_accuracy(per_class, [0, 1, 0]) == pytest.approx(0.6)
    # measured on a resample that keeps all of class 1 (so its 60% is exact): equals the prediction
    split_idx = Split(torch.arange(len(s.y)).float()[:, None], s.y)
    out = fw.label_shift(split_idx, [0.2, 0.5, 0.3], n=200, seed=3)
    measured = (pred[out.x[:, 0].long()] == out.y).float().mean().item()
    assert measured == pytest.approx(fw.prior_accuracy(per_class, [0.2, 0.5, 0.3])) == pytest.approx(0.8)


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        p = fw.derangement(5, seed)
        assert sorted(p) == list(range(5)) and all(a != i for i, a in enumerate(p))
    with pytest.raises(ParameterError, match="n"):
        fw.derangement(1, 0)


def test_permute_labels_renames_classes():
    s = toy_split()
    out = fw.permute_labels(s, [2, 0, 1])
    assert torch.equal(out.x, s.x)
    assert torch.equal(out.y, torch.tensor([2, 0, 1])[s.y])
    with pytest.raises(ParameterError, match="perm"):
        fw.permute_labels(s, [0, 0, 1])


# --- parameter counts ----------------------------------------------------------------

def test_parameter_table_counts_match_the_formulas():
    rows = fw.parameter_table({"dense": xu.models.dense_net}, ranks=(4,), bottlenecks=(8,))
    by = {r["method"]: r for r in rows}
    full = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    head = 128 * 10 + 10
    assert by["full fine-tuning"]["trainable"] == full and by["full fine-tuning"]["percent"] == 100.0
    assert by["feature extraction (head only)"]["trainable"] == head
    lora = 4 * ((784 + 512) + (512 + 256) + (256 + 128)) + head
    assert by["LoRA r=4"]["trainable"] == lora
    assert by["LoRA r=4"]["total"] == full + lora - head
    adapters = sum(2 * 8 * w + 8 + w for w in (512, 256, 128)) + head
    assert by["adapters b=8"]["trainable"] == adapters
    assert by["adapters b=8"]["percent"] == pytest.approx(100 * adapters / full)


# --- proxy A-distance ---------------------------------------------------------------------------

def test_a_distance_formula():
    assert fw.a_distance(0.5) == 0.0 and fw.a_distance(0.0) == 2.0 and fw.a_distance(0.25) == 1.0
    assert fw.a_distance(0.7) == 0.0  # worse than chance counts as chance
    with pytest.raises(ParameterError, match="error"):
        fw.a_distance(1.5)


def test_domain_splits_are_balanced_and_disjoint_halves():
    xs, xt = torch.zeros(100, 5), torch.ones(100, 5)
    tr, te = fw.domain_splits(xs, xt, n=40, seed=0)
    assert len(tr) == len(te) == 40
    assert tr.y.sum().item() == 20 and te.y.sum().item() == 20
    assert torch.equal(tr.x[:, 0], tr.y.float())  # source rows are 0, target rows are 1


def test_proxy_a_distance_identical_domains_is_near_zero():
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(1000, 20, generator=g), torch.randn(1000, 20, generator=g)
    d = fw.proxy_a_distances([(xs, xt)], seeds=[0, 1, 2], n=800)
    assert d.shape == (1, 3)
    assert d.mean() < 0.25


def test_proxy_a_distance_separable_domains_is_near_two():
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(500, 20, generator=g), torch.randn(500, 20, generator=g) + 3.0
    assert fw.proxy_a_distance(xs, xt, seed=0, n=400) > 1.95
    # and it orders shifts: a mild mean shift lies strictly between
    mild = torch.randn(500, 20, generator=g) + 0.3
    d = fw.proxy_a_distances([(xs, xs[torch.randperm(500)]), (xs, mild), (xs, xt)], [0, 1], n=400)
    assert d[0].mean() < d[1].mean() < d[2].mean()


def test_proxy_a_distances_rejects_empty_pairs():
    with pytest.raises(ParameterError, match="pairs"):
        fw.proxy_a_distances([], [0])


# --- chapter 2's studies and builders ------------------------------------------------------------

def tiny_source(seeds=(0, 1), n_classes=3):
    data = toy_split(n_per_class=40, n_classes=n_classes)
    nets = xu.ensemble.replicate(lambda: xu.models.dense_net(n_classes), list(seeds))
    return xu.ensemble.fit_replicas(nets, data, list(seeds), epochs=1, batch_size=64), data


def test_check_parameters_validates_every_knob():
    out = fw.check_parameters(0, [0, 1], "[2, 3]", "[0, 45]", [0.0, 0.1], 5)
    assert out == ([0, 1], [2, 3], [0.0, 45.0], [0.0, 0.1])
    with pytest.raises(ParameterError, match="same length"):
        fw.check_parameters(0, [0, 1, 2], [3, 4], [0], [0.0], 5)
    with pytest.raises(ParameterError, match="rotations"):
        fw.check_parameters(0, [0, 1], [2, 3], [400], [0.0], 5)
    with pytest.raises(ParameterError, match="few_shot"):
        fw.check_parameters(0, [0, 1], [2, 3], [0], [0.0], 0)


def test_skewed_priors():
    p = fw.skewed_priors(5, 2, 0.6)
    assert p[2] == 0.6 and sum(p) == pytest.approx(1.0) and p[0] == pytest.approx(0.1)
    with pytest.raises(ParameterError, match="c"):
        fw.skewed_priors(5, 5)


def test_random_halves_are_disjoint_and_cover_the_split():
    s = Split(torch.arange(10.0)[:, None], torch.arange(10))
    a, b = fw.random_halves(s, seed=0)
    assert len(a) == len(b) == 5
    assert sorted(a.y.tolist() + b.y.tolist()) == list(range(10))


def test_measure_shifts_predicts_label_shift_from_validation_images():
    source, data = tiny_source()
    val, test = fw.random_halves(data, seed=1)
    study = fw.measure_shifts(source, val, test, [4, 5, 6], n_label_shift=20, seed=0)
    assert list(study.targets)[:3] == ["source test", "rotated 45°", "noise σ=0.4"]
    assert len(study.label_shift_names) == 2 and "permuted labels" in study.targets
    assert study.per_class_val.shape == (2, 3)
    expected = [fw.prior_accuracy(pc, fw.skewed_priors(3, study.worst)) for pc in study.per_class_val]
    assert study.predicted[study.label_shift_names[0]] == pytest.approx(expected)
    assert sorted(study.perm) == [0, 1, 2] and all(p != i for i, p in enumerate(study.perm))
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    study.add_claims(fam)
    assert {c.id for c in fam.claims} == {"ch2-label-shift-predicted-hardest", "ch2-label-shift-predicted-easiest"}
    g = study.glue_values()
    assert g["chance"] == pytest.approx(100 / 3) and "ls_pred_worst" in g and "acc_perm" in g
    assert "| label shift" in study.label_shift_table()


def test_renamed_accuracy_equals_accuracy_on_the_original_labels():
    source, data = tiny_source()
    perm = [2, 0, 1]
    renamed = fw.renamed_accuracy(source, fw.permute_labels(data, perm), perm)
    assert renamed == pytest.approx(source.evaluate(data))


def test_transfer_to_new_tasks_trains_three_methods_with_early_stopping():
    source, data = tiny_source()
    pool, pool_val = fw.random_halves(data, seed=0)
    study = fw.transfer_to_new_tasks(source, {"new digits": (pool, pool_val, data)}, [0, 1], few_shot=5,
                                     max_epochs=4, patience=1, upper={"new digits": ([0.9, 0.8], 100)})
    row = study.accuracy["new digits"]
    assert "source model as is" not in row  # not defined for a new label space
    assert set(fw.TRANSFER_METHODS) <= set(row) and row["upper reference"] == [0.9, 0.8]
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in row.values())
    assert all(1 <= e <= 4 for v in study.epochs["new digits"].values() for e in v)
    assert "— (not defined)" not in study.table() and study.table().count("\n") == 1 + 4  # a row per method
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    study.add_claims(fam)
    assert {c.id for c in fam.claims} == {"ch2-frozen-vs-scratch-new", "ch2-tuned-vs-scratch-new"}
    assert study.glue_values()["full_new"] == pytest.approx(85.0)


def test_transfer_baselines_on_the_same_few_shot_images():
    source, data = tiny_source()
    pool, pool_val = fw.random_halves(data, seed=0)
    study = fw.transfer_to_new_tasks(source, {"new digits": (pool, pool_val, data)}, [0, 1], few_shot=5,
                                     max_epochs=2, patience=1, upper={"new digits": ([0.9, 0.8], 100)},
                                     make_net=lambda: xu.models.dense_net(3))
    row = study.accuracy["new digits"]
    shots = [xu.data.few_shot(pool, 5, seed=s) for s in (0, 1)]  # the images the methods trained on
    assert row["logistic regression on pixels"] == [xu.baselines.pixel_logistic(t, data, seed=s)
                                                    for t, s in zip(shots, (0, 1))]
    assert row["nearest class prototype"] == [xu.baselines.prototype_accuracy(t, data) for t in shots]
    table = study.table()
    assert "| logistic regression on pixels |" in table and table.count("\n") == 1 + 7
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    study.add_claims(fam)
    ids = {c.id for c in fam.claims if c.question == "ch2-baselines"}
    assert ids == {"ch2-baseline-frozen-vs-pixels-new", "ch2-baseline-tuned-vs-pixels-new",
                   "ch2-baseline-tuned-vs-randomnet-new"}
    g = study.glue_values()
    assert g["pixels_new"] == pytest.approx(100 * np.mean(row["logistic regression on pixels"]))
    bl = fw.transfer_baselines(study, 5)
    assert len(bl) == 3 and bl[0]["setting"] == "new digits, 5 labelled images per class"
    refs = fw.transfer_references(study, {"new digits": (88.0, "pixels")})
    assert refs[0]["target"] == 88.0 and refs[0]["measured"] == pytest.approx([90.0, 80.0])


def test_tables_for_the_page_fit_seven_columns():
    archs = {"dense": xu.models.dense_net, "deep": xu.models.deep_nn}
    t = fw.architecture_table(archs)
    assert "| dense | 4 | 784 → 128 | 566,144 | 1,290 |" in t
    m = fw.multiplier_table(xu.models.dense_net(5), gamma=0.5, epochs=4)
    assert "| `features.0` | 0.125 | frozen | frozen | frozen | train |" in m
    rows = fw.parameter_table(archs, ranks=(16,), bottlenecks=(8,))
    p = fw.parameter_markdown(rows)
    assert all(line.count("|") - 1 <= 7 for line in (t + "\n" + m + "\n" + p).splitlines())


def test_efficiency_claims_are_exact_and_decided():
    rows = fw.parameter_table({"dense": xu.models.dense_net}, ranks=(16,), bottlenecks=(8, 32))
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    pct = fw.add_efficiency_claims(fam, rows, "dense")
    v = fam.verdicts()
    assert pct["LoRA r=16"] > 5 and v["003-lora-r16-0.1pct"].verdict == "contradicted"
    assert v["003-adapters-1-5pct-b8"].verdict == ("supported" if 1 <= pct["adapters b=8"] <= 5 else "contradicted")
    assert v["003-adapters-1-5pct-b32"].verdict == "contradicted"  # about 10 %
    assert v["003-adapters-1-5pct-b8"].text.endswith("train 1–5 % of the parameters (difference from the 3 % midpoint)")


def test_lora_break_even_rank():
    assert fw.lora_break_even(256, 128) == pytest.approx(256 * 128 / 384)
    assert round(fw.lora_break_even(784, 512)) == 310  # 401,408 / 1,296 = 309.7
    r = fw.lora_break_even(784, 512)
    assert r * (784 + 512) == pytest.approx(784 * 512)  # r(d + k) trainable numbers: as many as the layer


def test_identity_at_init_is_zero():
    lora_gap, adapter_gap = fw.identity_at_init(torch.nn.Linear(20, 8), torch.randn(16, 20))
    assert lora_gap == 0.0 and adapter_gap == 0.0


def test_measure_bound_shapes_claims_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    source, data = tiny_source()
    bound = fw.measure_bound(source, data, {"rotate": [0, 90], "noise": [0.0, 0.5]}, [0, 1], n=40, epochs=2, seed=0)
    assert bound.curves["rotate"]["d_A"].shape == (2, 2) and bound.curves["noise"]["target_error"].shape == (2, 2)
    assert bound.source_error.shape == (2,)
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    bound.add_claims(fam)
    assert len(fam) == 2
    g = bound.glue_values()
    assert g["rot_max"] == "90" and g["noise_max"] == 0.5
    fig = bound.figure()
    assert len(fig.axes) == 2 and "%" in fig.axes[0].get_ylabel() and fig.get_size_inches()[0] <= 10


def test_framework_diagram_draws_one_row_per_strategy():
    import matplotlib

    matplotlib.use("Agg")
    plain = fw.framework_diagram(("a", "b", "c"))
    rows = fw.framework_diagram(strategies=fw.DIAGRAM_STRATEGIES)
    n_layers = 4
    assert len(rows.axes[0].patches) - len(plain.axes[0].patches) >= len(fw.DIAGRAM_STRATEGIES) * n_layers
    texts = [t.get_text() for t in rows.axes[0].texts]
    assert "feature extractor φ" in texts and "head g" in texts
    assert all(s in texts for s in fw.DIAGRAM_STRATEGIES)


def test_verdict_glue_and_claims_table_follow_the_verdicts():
    fam = xu.claims.Family("t", questions=[xu.claims.Question("q", "q", claims=("*",), margin=0.01)])
    fam.direction("a-wins", "book", "a beats b", [0.9, 0.91, 0.92, 0.93], [0.5, 0.5, 0.51, 0.5], unit="points")
    fam.direction("tie", "book", "c beats d", [0.5, 0.6, 0.4, 0.5], [0.5, 0.4, 0.6, 0.5], unit="points")
    fam.direction("slow", "book", "fewer epochs", [10, 11, 10, 12], [3, 3, 4, 3], expect="less", unit="epochs")
    fam.value("px", "seed 003", "equal", [0.5, 0.6, 0.55, 0.52], 0.0, tol=0.1)
    v = fam.verdicts()
    g = fw.verdict_glue(v)
    assert g["w_a_wins"] == "beats" and g["v_a_wins"] == "supported"
    assert g["w_tie"] == "is not shown to differ from" and g["v_tie"] == "not shown (4 seeds)"
    assert g["w_slow"] == "needs more epochs than"
    assert g["w_px"] == "fails"
    assert fw.verdict_glue(v, plural=("a-*", "tie"))["w_a_wins"] == "beat"
    assert fw.verdict_glue(v, plural=("tie",))["w_tie"] == "are not shown to differ from"
    assert fw.plural_verb(v["a-wins"].flipped()) == "trail"
    t = fw.claims_table(v)
    assert t.count("\n") == 5 and "| contradicted |" in t and "`a-wins`" in t and "detectable" in t


def test_bound_claim_ignores_the_unshifted_point():
    curves = {"rotate": {"strength": [0, 30], "d_A": np.array([[0.0, 0.0], [1.0, 1.2]]),
                         "target_error": np.array([[0.02, 0.03], [0.2, 0.25]])}}
    study = fw.BoundStudy(curves, np.array([0.05, 0.04]))  # at 0 the margin is +0.03 / +0.01
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    study.add_claims(fam)
    # margins at 30°: 0.05 + 0.5 - 0.2 = 0.35 and 0.04 + 0.6 - 0.25 = 0.39 (in points ×100)
    assert fam.claims[0].values == pytest.approx((35.0, 39.0))


def test_affordable_n_caps_label_shift_to_the_images_there_are():
    s = toy_split(n_per_class=10, n_classes=2)
    assert fw.affordable_n(s, [0.5, 0.5], 15) == 15
    assert fw.affordable_n(s, [0.8, 0.2], 100) == 12  # 10 images of class 0 / 0.8
    shifted = fw.label_shift(s, [0.8, 0.2], fw.affordable_n(s, [0.8, 0.2], 100), seed=0)
    assert len(shifted) == 12


def test_label_shift_distance_when_the_skewed_class_is_scarce():
    s = toy_split(n_per_class=30, n_classes=3)
    d = fw.label_shift_distance(s, [0.8, 0.1, 0.1], [0, 1], n=40, seed=0)  # a half has ~15 of class 0
    assert d.shifted.shape == d.same.shape == d.file_order.shape == (2,)
    assert set(d.glue_values()) >= {"dA_labelshift", "dA_same", "dA_order_std"}
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    d.add_claims(fam)
    assert fam.claims[0].id == "003-label-shift-keeps-px"


def test_verdict_glue_gives_the_frozen_features_plural_verbs():
    fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
    fam.direction("ch2-baseline-frozen-vs-pixels-new", "book", "frozen beats pixels", [60, 61, 62, 63],
                  [70, 70, 71, 70], unit="points")
    fam.direction("ch2-baseline-tuned-vs-pixels-new", "book", "tuned beats pixels", [80, 81, 82, 83],
                  [70, 70, 71, 70], unit="points")
    g = fw.verdict_glue(fam.verdicts())
    assert g["w_ch2_baseline_frozen_vs_pixels_new"] == "trail"  # "the frozen source features trail"
    assert g["w_ch2_baseline_tuned_vs_pixels_new"] == "beats"  # "fine-tuning beats"


def test_label_shift_words_follow_both_verdicts():
    def words(hard, easy):
        fam = xu.claims.Family("t", questions=xu.chapters.framework.QUESTIONS)
        for slug, d in (("hardest", hard), ("easiest", easy)):
            fam.value(f"ch2-label-shift-predicted-{slug}", "book", "within 1 point", d, 0.0, tol=1.0, unit="points")
        return fw.label_shift_words(fam.verdicts())

    close, far = [0.1, -0.1, 0.05, 0.0, -0.05], [3.0, 3.2, 2.9, 3.1, 3.0]
    assert words(close, close) == ("The prediction agrees within 1 point for the hardest digit (supported) "
                                   "and for the easiest (supported)")
    assert words(close, far) == ("The prediction agrees within 1 point for the hardest digit (supported) "
                                 "but misses by more than 1 point for the easiest (contradicted)")
    assert "is not shown to agree within 1 point for the hardest digit (not shown, 3 seeds) but agrees" \
        in words([0.5, -2, 3], close)
