"""Tests of xferutils.core.sharing (chapters 4 and 5): cases, pools, bases, shared layers,
objectives, probes, baselines."""
import pytest
import torch
from torch.nn import functional as F

import xferutils as xu
from xferutils.core import sharing
from xferutils.core.config import ParameterError
from xferutils.core.data import Split


SMALL = sharing.make_case("small")
SEEDS = [0, 1]
FAST = sharing.Settings(epochs=2, batch_size=64, width=16, proj_dim=8, n_bridge=5, memory_slots=4)


def toy_features(n_per_class: int = 20, k: int = 2, seed: int = 0) -> sharing.Features:
    """Random features for the small case's digits {0..4}: class-dependent means plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(5).repeat_interleave(n_per_class)
    c1, c2 = torch.randn(5, 64, generator=g), torch.randn(5, 32, generator=g)
    f1 = c1[y] + 0.1 * torch.randn(k, len(y), 64, generator=g)
    f2 = c2[y] + 0.1 * torch.randn(k, len(y), 32, generator=g)
    return sharing.Features(f1, f2, y)


def test_named_cases_match_seed():
    assert (SMALL.digits1, SMALL.digits2, SMALL.transfer) == ((0, 1, 2), (2, 3, 4), 3)
    assert SMALL.shared == (2,) and SMALL.untransferred == (4,) and SMALL.classes == (0, 1, 2, 3, 4)
    large = sharing.make_case("large")
    assert large.transfer == 8 and large.untransferred == (9,) and large.classes == tuple(range(10))
    assert sharing.make_case("medium").untransferred == (6,)


@pytest.mark.parametrize("kwargs, name", [
    ({"name": "huge"}, "test_case"),
    ({"digits1": [0, 1, 2], "digits2": [2, 3, 4], "transfer": 5}, "transfer_digit"),  # donor lacks it
    ({"digits1": [0, 1, 3], "digits2": [2, 3, 4], "transfer": 3}, "transfer_digit"),  # Network 1 knows it
    ({"digits1": [0, 1], "digits2": [2, 3, 4], "transfer": 3}, "share"),  # nothing to align on
    ({"digits1": [0, 1, 2, 4], "digits2": [2, 3, 4], "transfer": 3}, "isolation"),  # no untransferred digit
    ({"digits1": [0, 1, 11], "digits2": [2, 3, 4], "transfer": 3}, "digits1"),
    ({"digits1": [0, 1, 2], "digits2": None, "transfer": 3}, "digits2"),
])
def test_bad_cases_raise_naming_the_problem(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        sharing.make_case(**kwargs)


def test_custom_case():
    case = sharing.make_case(None, [0, 1, 7], [1, 6, 7, 9], 6)
    assert case.shared == (1, 7) and case.untransferred == (9,)


def test_pool_and_relabel():
    data = Split(torch.zeros(100, 784), torch.arange(10).repeat(10))
    p = sharing.pool(data, [2, 5], 4, seed=0)
    assert len(p) == 8 and sorted(p.y.tolist()) == [2] * 4 + [5] * 4
    assert xu.data.relabel(torch.tensor([2, 5, 7]), [2, 5]).tolist() == [0, 1, -1]


def test_zero_shot_rows_hide_the_transfer_digit_from_network1():
    f = toy_features()
    d1, d2 = 64, 32
    for approach in sharing.ZERO_SHOT + ("none",):
        for split in sharing.visible_rows(approach, f, SMALL, SEEDS):
            m1, m2 = split.x[:, d1 + d2], split.x[:, d1 + d2 + 1]
            digits = torch.tensor(SMALL.classes)[split.y]
            t = digits == SMALL.transfer
            assert m1[t].sum() == 0 and split.x[t, :d1].abs().sum() == 0  # Network 1 never sees it
            assert (m2[t] == 1).all()  # the donor does
            both = (m1 == 1) & (m2 == 1)
            assert set(digits[both].tolist()) == set(SMALL.shared)  # pairs only on shared digits
            assert split.x[m2 == 0, d1:d1 + d2].abs().sum() == 0


def test_bridging_shows_network1_exactly_n_transfer_images():
    f = toy_features()
    rows = sharing.visible_rows("bridging", f, SMALL, SEEDS, n_bridge=5)
    for split in rows:
        m1 = split.x[:, 96]
        digits = torch.tensor(SMALL.classes)[split.y]
        t1 = (digits == SMALL.transfer) & (m1 == 1)
        uniq = torch.unique(split.x[t1, :64], dim=0)
        assert len(uniq) == 5  # 5 distinct images, oversampled to balance the class
        assert t1.sum() == 5 * (20 // 5)
    with pytest.raises(ParameterError, match="n_bridge"):
        sharing.visible_rows("bridging", f, SMALL, SEEDS, n_bridge=0)
    pick = sharing.bridge_pick(f.y, SMALL, 5, SEEDS[0])
    seen = (rows[0].x[:, 96] == 1) & (torch.tensor(SMALL.classes)[rows[0].y] == SMALL.transfer)
    assert torch.equal(torch.unique(rows[0].x[seen, :64], dim=0), torch.unique(f.f1[0][pick], dim=0))


def test_without_donor_network2_sees_nothing():
    rows = sharing.visible_rows("bridging", toy_features(), SMALL, SEEDS, n_bridge=5, use_donor=False)
    assert all(r.x[:, 97].sum() == 0 and r.x[:, 64:96].abs().sum() == 0 for r in rows)


@pytest.mark.parametrize("approach", sharing.APPROACHES)
def test_every_approach_trains_and_predicts(approach):
    f, test = toy_features(), toy_features(n_per_class=10, seed=0)
    out = sharing.train_approach(approach, f, SMALL, SEEDS, FAST)
    pred = out.predict1(test.f1)
    assert pred.shape == (2, len(test)) and set(pred.unique().tolist()) <= set(SMALL.classes)
    assert out.predict2(test.f2).shape == (2, len(test))
    assert out.trainable == xu.models.count_parameters(out.models[0])
    assert len(out.history) == 2 and len(out.history[0].loss) == FAST.epochs
    m = sharing.outcome_metrics(out, test, feats_time=1.0, feats_cpu=1.0)
    for key in ("transfer", "retention", "isolation", "leak", "donor", "align"):
        assert len(m[key]) == 2 and all(0 <= v <= 1.5 for v in m[key])
    assert m["seconds"] >= 1.0 and m["cpu_seconds"] >= 1.0
    if approach == "prototypes":
        assert out.prototypes[0].shape == (5, FAST.width)


def test_unknown_approach_raises():
    with pytest.raises(ParameterError, match="approach"):
        sharing.train_approach("telepathy", toy_features(), SMALL, SEEDS, FAST)


def test_bridging_learns_the_transfer_digit_on_separable_features():
    f, test = toy_features(n_per_class=40), toy_features(n_per_class=20, seed=0)
    s = sharing.Settings(epochs=30, batch_size=64, n_bridge=10)
    acc = sharing.outcome_metrics(sharing.train_approach("bridging", f, SMALL, SEEDS, s), test)["transfer"]
    assert min(acc) > 0.9  # (without bridging, an unseen cluster lands on an arbitrary class)
    out = sharing.train_approach("bridging", f, SMALL, SEEDS, s)
    seen = sharing.outcome_metrics(out, test, train=f)["seen"]
    assert len(seen) == 2 and min(seen) > 0.9
    assert "seen" not in sharing.outcome_metrics(sharing.train_approach("none", f, SMALL, SEEDS, FAST), test, train=f)


def test_bias_sweep_trades_retention_for_transfer():
    f, test = toy_features(), toy_features(n_per_class=10, seed=0)
    out = sharing.train_approach("bridging", f, SMALL, SEEDS, FAST)
    res = sharing.bias_sweep(out, test, [0.0, 1e6])
    assert res[0.0]["transfer"] == sharing.transfer_metrics(out.predict1(test.f1), test.y, SMALL)["transfer"]
    assert res[1e6]["transfer"] == [1.0, 1.0] and res[1e6]["retention"] == [0.0, 0.0]  # everything is "3"
    with pytest.raises(ParameterError, match="prototypes"):
        sharing.bias_sweep(sharing.train_approach("prototypes", f, SMALL, SEEDS, FAST), test, [0.0])


TINY = dict(base_per_class=30, shared_per_class=20, val_per_class=10)


QUICK = sharing.Recipe(epochs=2, lr=2e-3, batch_size=64, patience=1)


def test_bases_stay_frozen(mnist):
    case = SMALL
    pools = sharing.case_pools(mnist.train, case, data_seed=0, **TINY)
    tr = pools.shared
    bases = sharing.trained_bases(case, pools, Split(mnist.test.x[:200], mnist.test.y[:200]), SEEDS, QUICK)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in bases.net1 + bases.net2]
    feats = sharing.extract(bases, tr)
    assert feats.f1.shape == (2, len(tr), 64) and feats.f2.shape == (2, len(tr), 32)
    assert all(not p.requires_grad for m in bases.net1 + bases.net2 for p in m.parameters())
    sharing.train_approach("adversarial", feats, case, SEEDS, FAST)
    after = [m.state_dict() for m in bases.net1 + bases.net2]
    assert all(torch.equal(b[k], a[k]) for b, a in zip(before, after) for k in b)
    again = sharing.extract(bases, tr)
    assert torch.equal(again.f1, feats.f1) and torch.equal(again.f2, feats.f2)


def test_discriminator_and_projections_oppose():
    torch.manual_seed(0)
    net = sharing.SharedNet(6, 4, 5, width=8, proj_dim=3, discriminator=True, adv_lambda=0.7)
    x = sharing.pack(torch.randn(16, 6), torch.randn(16, 4), torch.ones(16), torch.ones(16))
    s = sharing.Settings(adv_weight=1.0)
    y = torch.zeros(16, dtype=torch.long)

    def grads(obj):
        net.zero_grad()
        obj(net, x, y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    adv = grads(sharing.make_objective("adversarial", 6, 4, s))
    plain = grads(sharing.make_objective("none", 6, 4, s))
    # the domain loss alone, without reversal: its gradient on the projections
    net.zero_grad()
    z1, z2 = net.proj1(x[:, :6]), net.proj2(x[:, 6:10])
    dom = (torch.nn.functional.binary_cross_entropy_with_logits(net.disc(z1).squeeze(-1), torch.zeros(16))
           + torch.nn.functional.binary_cross_entropy_with_logits(net.disc(z2).squeeze(-1), torch.ones(16)))
    dom.backward()
    direct = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    for n in ("proj1.weight", "proj2.weight"):  # projections ascend the domain loss (reversed, scaled)
        assert torch.allclose(adv[n] - plain[n], -0.7 * direct[n], atol=1e-5)
    for n in ("disc.0.weight", "disc.2.weight"):  # the discriminator descends it
        assert torch.allclose(adv[n], direct[n], atol=1e-5)


def test_prototypes_exact_on_separated_clusters():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y = torch.arange(3).repeat_interleave(50)
    h = centres[y] + 0.5 * torch.randn(150, 2, generator=torch.Generator().manual_seed(0))
    protos = sharing.class_prototypes(h, y, 4)  # class 3 absent -> NaN, must never win
    assert torch.isnan(protos[3]).all()
    assert torch.allclose(protos[:3], centres, atol=0.2)
    assert torch.equal(sharing.nearest_prototype(h, protos), y)
    mask = y != 1
    assert torch.isnan(sharing.class_prototypes(h, y, 3, mask)[1]).all()


def test_memory_read_is_convex():
    g = torch.Generator().manual_seed(0)
    h, mem = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g)
    read, w = sharing.memory_read(h, mem)
    assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(7))
    assert torch.allclose(read, w @ mem)
    lo, hi = mem.min(0).values, mem.max(0).values
    assert ((read >= lo - 1e-6) & (read <= hi + 1e-6)).all()  # inside the bounding box of the rows
    one, w1 = sharing.memory_read(h, mem[:1])
    assert torch.allclose(one, mem[:1].expand(7, 5)) and torch.allclose(w1, torch.ones(7, 1))


def test_contrastive_loss_pulls_same_and_pushes_different():
    z = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    y, ones = torch.tensor([0, 1]), torch.ones(2)
    assert sharing.contrastive_loss(z, z, y, ones, ones, margin=2.0).item() == pytest.approx(0.0, abs=1e-6)
    near = torch.tensor([[0.0, 0.0], [0.5, 0.0]])
    # same class identical (0), different classes 0.5 apart: hinge (2 - 0.5)^2 = 2.25
    assert sharing.contrastive_loss(near, near, y, ones, ones, margin=2.0).item() == pytest.approx(2.25, rel=1e-4)
    shifted = z + torch.tensor([1.0, 0.0])
    assert sharing.contrastive_loss(z, shifted, y, ones, ones, margin=2.0).item() == pytest.approx(1.0, rel=1e-4)


def test_transfer_metrics_count_what_they_claim():
    # small case: own digits 0,1,2; transfer 3; untransferred 4
    y = torch.tensor([0, 1, 2, 3, 3, 3, 3, 4, 4])
    pred = torch.tensor([[0, 1, 0, 3, 3, 2, 4, 4, 0]])
    m = sharing.transfer_metrics(pred, y, SMALL)
    assert m["retention"] == [pytest.approx(2 / 3)]
    assert m["transfer"] == [pytest.approx(2 / 4)]
    assert m["isolation"] == [pytest.approx(1 / 2)]  # one of the two 4s labelled 4
    assert m["leak"] == [pytest.approx(2 / 9)]  # a 3 and a 4 labelled 4
    none = sharing.transfer_metrics(torch.tensor([0, 1, 2, 0, 0, 0, 0, 0, 0]), y, SMALL)
    assert none["isolation"] == [0.0] and none["leak"] == [0.0] and none["transfer"] == [0.0]


def test_epochs_to_converge():
    assert sharing.epochs_to_converge([1.0, 0.5, 0.1, 0.06, 0.05]) == 4
    assert sharing.epochs_to_converge([1.0, 1.0]) == 1


def test_prediction_shares():
    pred = torch.tensor([[3, 3, 2, 0], [1, 1, 1, 1]])
    s = sharing.prediction_shares(pred, torch.tensor([3, 3, 3, 3]), 3)
    assert s.shape == (2, 10) and s[0, 3] == 0.5 and s[1, 1] == 1.0
    assert torch.allclose(s.sum(-1), torch.ones(2))


def test_linear_probe_reads_separable_features():
    f, test = toy_features(n_per_class=30), toy_features(n_per_class=10, seed=0)
    p = sharing.linear_probe(f, test, [0, 1, 2, 3], SEEDS, epochs=200)
    assert {"d0", "d1", "d2", "d3", "all", "train", "train_d3", "iterations"} <= set(p)
    assert min(p["d3"]) > 0.9 and min(p["train"]) == 1.0
    assert len(p["all"]) == 2


def test_fit_logistic_solves_each_replica_on_its_own():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.randn(2, 90, 5, generator=g) + 8 * F.one_hot(y, 5).float()  # separable along axes 0..2
    both, iters = sharing.fit_logistic(x, y, 3, l2=1e-2)
    alone, _ = sharing.fit_logistic(x[1:], y, 3, l2=1e-2)
    assert iters >= 1 and both.grad_norm < 1e-5  # solved: the gradient vanishes at the end
    assert (both(x).argmax(-1) == y).float().mean() == 1.0
    assert torch.allclose(both(x)[1], alone(x[1:])[0], atol=1e-3)  # stacking does not couple them
    with pytest.raises(ParameterError, match="l2"):
        sharing.fit_logistic(x, y, 3, l2=-1.0)


def test_choose_bias_picks_on_the_sweep_it_is_given():
    sweep = {0.0: {"transfer": [0.5, 0.5], "retention": [0.99, 0.99]},
             1.0: {"transfer": [0.8, 0.8], "retention": [0.95, 0.93]},
             2.0: {"transfer": [0.95, 0.97], "retention": [0.80, 0.82]}}
    assert sharing.choose_bias(sweep) == 1.0  # best transfer that keeps retention >= 90 %
    assert sharing.choose_bias(sweep, min_retention=0.999) is None
    assert sharing.choose_bias(sweep, target=0.94) == 2.0
    assert sharing.choose_bias(sweep, target=0.99) is None


def test_disjoint_pools_share_no_image(mnist):
    a, b, c = sharing.disjoint_pools(mnist.train, [3, 5], [4, 3, 2], seed=1)
    assert [len(a), len(b), len(c)] == [8, 6, 4]
    assert torch.bincount(b.y, minlength=10)[[3, 5]].tolist() == [3, 3]
    rows = torch.cat([a.x, b.x, c.x]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 18
    with pytest.raises(ParameterError, match="n_per_class"):
        sharing.disjoint_pools(mnist.train, [3], [0, 1], seed=0)


def test_pool_sizes_hold_the_images_per_network():
    sizes = {n: sharing.pool_sizes("book", sharing.make_case(n)) for n in ("small", "medium", "large")}
    cap, total = sharing.SCALES["book"]["max_per_class"], sharing.SCALES["book"]["base_images"]
    for n, s in sizes.items():
        d = len(sharing.make_case(n).digits1)
        assert s["base_per_class"] == min(cap, total // d)
        assert s["base_per_class"] + s["shared_per_class"] + s["val_per_class"] <= 5421  # MNIST's rarest digit
    assert sizes["small"]["base_per_class"] > sizes["large"]["base_per_class"]
    with pytest.raises(ParameterError, match="preset"):
        sharing.pool_sizes("huge", SMALL)


def test_weight_grid_is_chosen_on_validation_and_extended_at_an_edge():
    f, val = toy_features(), toy_features(n_per_class=10, seed=0)
    s = sharing.Settings(epochs=3, patience=2, batch_size=64, width=16, proj_dim=8, grid=(0.1, 1.0), max_extend=1)
    out = sharing.train_approach("alignment", f, SMALL, SEEDS, s, val=val)
    assert out.weight in out.scores
    assert out.weight == max(out.scores, key=out.scores.get)
    assert len(out.scores) == 3  # a two-point grid always has its choice at an edge: extended once
    assert all(1 <= e <= 3 for e in out.epochs)
    plain = sharing.train_approach("none", f, SMALL, SEEDS, s, val=val)
    assert plain.weight is None and plain.scores == {}


def test_prototypes_reusing_alignment_equal_prototypes_trained_alone():
    f, val, test = toy_features(), toy_features(n_per_class=10, seed=1), toy_features(n_per_class=10, seed=2)
    s = sharing.Settings(epochs=3, patience=2, batch_size=64, width=16, proj_dim=8, grid=(0.1, 1.0), max_extend=1)
    align = sharing.train_approach("alignment", f, SMALL, SEEDS, s, val=val)
    alone = sharing.train_approach("prototypes", f, SMALL, SEEDS, s, val=val)
    reused = sharing.train_approach("prototypes", f, SMALL, SEEDS, s, val=val, reuse=align)
    assert reused.scores == alone.scores and reused.weight == alone.weight
    assert torch.equal(reused.predict1(test.f1), alone.predict1(test.f1))
    assert all(torch.equal(a, b) for a, b in zip(reused.prototypes, alone.prototypes))
    assert reused.seconds >= align.seconds  # the training it stands on is counted
    with pytest.raises(ParameterError, match="cannot reuse"):
        sharing.train_approach("contrastive", f, SMALL, SEEDS, s, val=val, reuse=align)
    with pytest.raises(ParameterError, match="another case, seeds, settings or features"):
        sharing.train_approach("prototypes", f, SMALL, [5, 6], s, val=val, reuse=align)
    with pytest.raises(ParameterError, match="another case, seeds, settings or features"):
        sharing.train_approach("prototypes", toy_features(seed=3), SMALL, SEEDS, s, val=val, reuse=align)


def test_shared_net_on_network1_features_alone_gives_its_logits():
    net = sharing.SharedNet(6, 4, 5, width=8, proj_dim=3)
    f1 = torch.randn(7, 6)
    assert torch.equal(net(f1), net.path1(f1))
    assert set(net(sharing.pack(f1, torch.randn(7, 4), torch.ones(7), torch.ones(7)))) >= {"logit1", "w"}


def test_bridging_rows_have_one_length_for_every_n():
    f = toy_features()
    lengths = {len(sharing.visible_rows("bridging", f, SMALL, SEEDS, n_bridge=n)[0]) for n in (1, 3, 7, 20)}
    assert len(lengths) == 1


def test_labelled_rows_are_bridgings_images_with_one_digit_per_row():
    y = torch.arange(5).repeat(12)  # 12 images of each of the small case's digits
    rows = sharing.labelled_rows(y, SMALL, [0, 1, 2], 4)
    assert rows.shape == (3, 3 * 12 + 12)  # Network 1's digits, then 12 rows of the transfer digit
    assert all(torch.equal(y[r], y[rows[0]]) for r in rows)
    for k, sd in enumerate([0, 1, 2]):
        picked = set(rows[k][36:].tolist())
        assert picked == set(sharing.bridge_pick(y, SMALL, 4, sd).tolist())  # the very images bridging sees
        assert (y[rows[k][:36]] != 3).all()
    with pytest.raises(ParameterError, match="n_bridge"):
        sharing.labelled_rows(y, SMALL, [0], 13)


def test_probe_with_fewer_labels_fits_only_those():
    f, test = toy_features(n_per_class=30), toy_features(n_per_class=10, seed=0)
    rows = sharing.labelled_rows(f.y, SMALL, SEEDS, 2)
    p = sharing.linear_probe(f, test, [0, 1, 2, 3], SEEDS, epochs=200, rows=rows)
    assert min(p["d3"]) > 0.9  # separable toy features: two labelled 3s suffice
    with pytest.raises(ParameterError, match="rows"):
        sharing.linear_probe(f, test, [0, 1, 2, 3], SEEDS, rows=rows[:1])
    bad = rows.clone()
    bad[1, 0], bad[1, -1] = bad[1, -1].item(), bad[1, 0].item()
    with pytest.raises(ParameterError, match="same digit"):
        sharing.linear_probe(f, test, [0, 1, 2, 3], SEEDS, rows=bad)


def test_store_trains_a_base_once_and_reads_it_back(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_STORE", str(tmp_path))
    pools = sharing.case_pools(mnist.train, SMALL, data_seed=0, **TINY)
    first = sharing.trained_nets("wide", SMALL.digits1, pools, SEEDS, QUICK)
    again = sharing.trained_nets("wide", SMALL.digits1, pools, SEEDS, QUICK)
    assert all(torch.equal(first.params[n], again.params[n]) for n in first.params)
    other = sharing.trained_nets("wide", SMALL.digits1, pools, SEEDS, sharing.Recipe(epochs=2, lr=5e-4, batch_size=64, patience=1))
    assert not all(torch.equal(first.params[n], other.params[n]) for n in first.params)
    assert len(list(tmp_path.iterdir())) == 2  # one key per recipe


@pytest.mark.parametrize("kwargs, name", [({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"),
                                          ({"batch_size": 0}, "batch_size"), ({"patience": 0}, "patience"),
                                          ({"schedule": "cosine"}, "schedule"), ({"init": "xavier"}, "init"),
                                          ({"schedule": "onecycle"}, "onecycle"),
                                          ({"patience": None}, "patience=None")])
def test_recipe_refuses_bad_values(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        sharing.Recipe(**kwargs)


def test_pixel_baselines_learn_the_transfer_digit(mnist):
    pools = sharing.case_pools(mnist.train, SMALL, data_seed=0, base_per_class=5, shared_per_class=60, val_per_class=5)
    test = Split(mnist.test.x[:1000], mnist.test.y[:1000])
    out = sharing.pixel_baselines(SMALL, pools, test, SEEDS, 20)
    assert min(out["pixels"]["transfer"]) > 0.5 and min(out["prototypes"]["transfer"]) > 0.5  # chance: 0.25
    assert min(out["pixels"]["retention"]) > 0.8


def test_he_init_keeps_the_signal_through_the_deep_network():
    torch.manual_seed(0)
    x = torch.rand(512, 784)

    def last_hidden_std(model):
        with torch.no_grad():
            return model.embed(x).std().item() / x.std().item()

    torch.manual_seed(1)
    default = xu.models.deep_nn(3)
    torch.manual_seed(1)
    he = sharing.he_init(xu.models.deep_nn(3))
    w = xu.models.linear_layers(he)[1].weight
    assert w.var().item() == pytest.approx(2 / w.shape[1], rel=0.1)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in xu.models.linear_layers(he))
    assert last_hidden_std(default) < 0.5 * last_hidden_std(he)  # the default shrinks it layer by layer


def test_onecycle_recipe_runs_every_epoch_and_records_the_validation_curve(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_STORE", str(tmp_path))
    pools = sharing.case_pools(mnist.train, SMALL, data_seed=0, **TINY)
    recipe = sharing.Recipe(epochs=3, lr=3e-3, batch_size=32, patience=None, schedule="onecycle", init="he")
    test = Split(mnist.test.x[:300], mnist.test.y[:300])
    bases = sharing.trained_bases(SMALL, pools, test, SEEDS, recipe)
    assert bases.epochs1 == [3, 3] and bases.epochs2 == [3, 3]
    assert all(len(h.val_acc) == 3 and len(h.loss) == 3 for h in bases.history1 + bases.history2)
    again = sharing.trained_bases(SMALL, pools, test, SEEDS, recipe)  # read back from the store, curves included
    assert [h.val_acc for h in again.history2] == [h.val_acc for h in bases.history2]
    other = sharing.trained_nets("deep", SMALL.digits2, pools, [1000], sharing.Recipe(
        epochs=3, lr=3e-3, batch_size=32, patience=None, schedule="onecycle", init="torch"))
    assert not torch.equal(other.params["head.weight"][0], again.net2[0].head.weight)  # init is in the key


def test_oversample_repeats_to_exactly_n():
    pick = torch.tensor([4, 7, 9])
    assert sharing.oversample(pick, 7).tolist() == [4, 7, 9, 4, 7, 9, 4]
    assert sharing.oversample(pick, 2).tolist() == [4, 7]
    assert sharing.case_tensor([5, 6], pick).tolist() == [5, 6]


def test_val_rows_hold_network_1s_digits_and_the_transfer_digit():
    f = toy_features(n_per_class=6)
    rows = sharing.val_rows(f, SMALL, 2)
    assert len(rows) == 2
    want = (*SMALL.digits1, SMALL.transfer)
    assert sorted(set(rows[0].y.tolist())) == sorted(SMALL.classes.index(d) for d in want)
    assert len(rows[0]) == 6 * len(want) and rows[0].x.shape[1] == f.f1.shape[-1]


def test_fit_shared_and_outcome_of_are_train_approach_in_two_steps():
    """train_approach = visible rows -> fit_shared -> outcome_of: the same weights bit for bit."""
    f = toy_features()
    whole = sharing.train_approach("prototypes", f, SMALL, SEEDS, FAST)
    rows = sharing.visible_rows("prototypes", f, SMALL, SEEDS, n_bridge=FAST.n_bridge)
    models, history, trainable = sharing.fit_shared("prototypes", SMALL, rows, None, SEEDS, [1.0, 1.0], FAST,
                                                    f.f1.shape[-1], f.f2.shape[-1])
    out = sharing.outcome_of("prototypes", SMALL, models, history, rows, f, SEEDS, FAST, trainable, None)
    for a, b in zip(sharing.prototypes_of(models, rows, SMALL), whole.prototypes):
        torch.testing.assert_close(a, b)
    assert isinstance(out, sharing.Outcome) and out.trainable == whole.trainable
    for a, b in zip(out.prototypes, whole.prototypes):
        torch.testing.assert_close(a, b)
    assert torch.equal(out.predict1(f.f1), whole.predict1(f.f1))


def test_alignment_ratio_is_zero_when_aligned_and_near_one_when_not():
    """Same-image distance over random-pair distance: 0 for projections that agree on every
    image, about 1 for two unrelated projections."""
    from types import SimpleNamespace
    f = toy_features(n_per_class=30)
    same = sharing.Features(f.f1, f.f1[..., :32].clone(), f.y)  # network 2 sees network 1's first 32 features
    take8 = SimpleNamespace(proj1=lambda x: x[:, :8], proj2=lambda x: x[:, :8])
    aligned = SimpleNamespace(case=SMALL, models=[take8, take8])
    assert sharing.alignment_ratio(aligned, same) == [0.0, 0.0]
    unrelated = SimpleNamespace(case=SMALL, models=[SimpleNamespace(proj1=lambda x: x[:, :8],
                                                                    proj2=lambda x: x[:, 8:16])] * 2)
    noisy = sharing.Features(f.f1, torch.randn(f.f1.shape[0], f.f1.shape[1], 32,
                                               generator=torch.Generator().manual_seed(1)), f.y)
    assert all(0.8 < r < 1.2 for r in sharing.alignment_ratio(unrelated, noisy))


def test_train_base_trains_one_network_per_seed_on_its_digits(mnist):
    """K WideNNs on digits (0, 1, 2), with early stopping on validation: one model per seed,
    outputs for those digits only, test accuracy well above chance."""
    cls = [0, 1, 2]
    keep = lambda d: Split(*[t[torch.isin(d.y, torch.tensor(cls))][:600] for t in (d.x, d.y)])  # noqa: E731
    train, test = keep(mnist.train), keep(mnist.test)
    nets, accs, reps = sharing.train_base("wide", train, test, cls, SEEDS, epochs=2, batch_size=64,
                                          val=test, patience=1)
    assert len(nets) == len(accs) == len(reps) == 2
    assert nets[0].head.out_features == 3 and all(a > 0.8 for a in accs)
    with pytest.raises(ParameterError, match="arch"):
        sharing.train_base("tall", train, test, cls, SEEDS, epochs=1)


def test_curve_sizes_span_this_preset_full_and_every_image():
    large = sharing.make_case("large")
    book, full = (sharing.pool_sizes(p, large)["base_per_class"] for p in ("book", "full"))
    assert sharing.curve_sizes("book", large) == sorted({book, full, sharing.MAX_PER_CLASS})
    assert book < full < sharing.MAX_PER_CLASS  # the large case's pool grows from book to every image
    own = sharing.pool_sizes("smoke", SMALL)["base_per_class"]
    assert sharing.curve_sizes("smoke", SMALL) == [own, 2 * own]


def test_size_curve_matches_the_main_runs_bases_at_their_own_pool(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_STORE", str(tmp_path))
    test = Split(mnist.test.x[:300], mnist.test.y[:300])
    own = sharing.pool_sizes("smoke", SMALL)
    main = sharing.trained_bases(SMALL, sharing.case_pools(mnist.train, SMALL, data_seed=0, **own), test, [0], QUICK)
    per = own["base_per_class"]
    curve = sharing.size_curve(SMALL, mnist.train, test, [per, 2 * per], 0, QUICK, preset="smoke")
    assert sorted(curve) == [per, 2 * per]
    assert curve[per] == pytest.approx((100 * main.acc1[0], 100 * main.acc2[0]))  # the same pools and seed
    assert all(0.0 <= a <= 100.0 for v in curve.values() for a in v)
    assert len(list(tmp_path.iterdir())) >= 2  # both architectures kept in the store


@pytest.mark.parametrize("sizes", [[], [0], [sharing.MAX_PER_CLASS + 1]])
def test_size_curve_refuses_bad_sizes(mnist, sizes):
    with pytest.raises(ParameterError, match="sizes"):
        sharing.size_curve(SMALL, mnist.train, mnist.test, sizes, 0, QUICK)
