"""Tests of xferutils.framework (chapter 2): shifts, objective helpers, parameter counts, proxy A-distance."""
import pytest
import torch

import xferutils as xu
from xferutils import framework as fw
from xferutils.config import ParameterError
from xferutils.data import Split


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
