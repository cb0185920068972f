"""Tests of xferutils.strategies: each strategy trains exactly what it claims (chapter 3)."""
import copy

import pytest
import torch
from torch.nn import functional as F

import xferutils as xu
from xferutils import strategies as st
from xferutils.config import ParameterError


def net(n_classes: int = 3) -> xu.models.MLP:
    torch.manual_seed(0)
    return xu.models.MLP([784, 16, 12, 8], n_classes)


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(96, 784, generator=gen)
    y = torch.randint(0, 4, (96,), generator=gen)
    return xu.data.Split(x, y)


def changed(before: torch.nn.Module, after: torch.nn.Module) -> dict[str, bool]:
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    return {n: not torch.equal(a[n], b[n]) for n in a}


def train_one(prep: st.Prepared, data, epochs: int = 2) -> torch.nn.Module:
    rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=epochs, lr=1e-2, batch_size=32,
                                   lr_mult=st.merge_multipliers([prep]), penalty=prep.penalty)
    return rep.unstack()[0]


EXPECTED_TRAINED = {  # which parameters change, by name prefix
    "scratch": lambda n: True,
    "feature_extraction": lambda n: n.startswith("head."),
    "full_ft": lambda n: True,
    "discriminative": lambda n: True,
    "gradual": lambda n: True,
    "l2sp": lambda n: True,
    "lora": lambda n: n.startswith("head.") or "lora_" in n,
    "adapters": lambda n: n.startswith("head.") or n.split(".")[1] in {"2", "5", "8"},
}


@pytest.mark.parametrize("name", st.STRATEGIES)
def test_each_strategy_trains_exactly_what_it_claims(name, data):
    prep = st.prepare(name, net(), 4, seed=1, epochs=4)
    before = copy.deepcopy(prep.model)
    after = train_one(prep, data, epochs=4 if name == "gradual" else 2)
    claims = EXPECTED_TRAINED[name]
    for n, moved in changed(before, after).items():
        assert moved == claims(n), (name, n, moved)
    # the gradient flows exactly into the parameters marked trainable
    model = prep.model
    model.zero_grad()
    F.cross_entropy(model(data.x), data.y).backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == claims(n), (name, n)
    # the count of trainable parameters agrees
    assert prep.trainable == sum(p.numel() for n, p in model.named_parameters() if claims(n))


def test_new_head_and_scratch_reinitialises():
    src = net()
    prep = st.prepare("full_ft", src, 4)
    assert prep.model.head.out_features == 4
    assert torch.equal(prep.model.features[0].weight, src.features[0].weight)
    scratch = st.prepare("scratch", src, 4, seed=3)
    assert not torch.equal(scratch.model.features[0].weight, src.features[0].weight)
    assert torch.equal(st.prepare("scratch", src, 4, seed=3).model.features[0].weight,
                       scratch.model.features[0].weight)
    assert src.head.out_features == 3  # the source is not modified


def test_discriminative_rates_reach_the_optimizer(data):
    gamma = 0.5
    prep = st.prepare(st.Strategy("discriminative", gamma=gamma), net(), 4)
    mult = prep.multipliers(0)
    assert mult["head.weight"] == 1.0
    assert mult["features.4.weight"] == gamma
    assert mult["features.2.bias"] == gamma ** 2
    assert mult["features.0.weight"] == gamma ** 3
    # with plain SGD-like first Adam step every element moves by lr·mult: check the step sizes
    before = copy.deepcopy(prep.model)
    rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=1, lr=1e-3, batch_size=96,
                                   lr_mult=st.merge_multipliers([prep]))
    after = rep.unstack()[0]
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    for name in ("head.bias", "features.4.bias", "features.2.bias", "features.0.bias"):
        step = (a[name] - b[name]).abs().max().item()
        assert step == pytest.approx(1e-3 * mult[name], rel=1e-3), name


def test_gradual_unfreezing_follows_its_schedule():
    prep = st.prepare(st.Strategy("gradual", unfreeze_every=2), net(), 4)
    layers = st.layer_names(prep.model)
    assert layers == ["features.0", "features.2", "features.4", "head"]
    for epoch, k in [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (6, 4), (50, 4)]:
        assert st.unfrozen_layers(epoch, 4, 2) == k
        mult = prep.multipliers(epoch)
        trained = [layer for layer in layers if mult[f"{layer}.weight"] > 0]
        assert trained == layers[4 - k:], (epoch, trained)


def test_gradual_automatic_stages_cover_the_run():
    prep = st.prepare("gradual", net(), 4, epochs=12)  # 4 layers: stages of 3 epochs
    assert [sum(v > 0 for v in prep.multipliers(e).values()) // 2 for e in (0, 2, 3, 6, 9, 11)] == [1, 1, 2, 3, 4, 4]


def test_gradual_unfreezing_moves_layers_only_after_their_stage(data):
    prep = st.prepare(st.Strategy("gradual", unfreeze_every=1), net(), 4)
    before = copy.deepcopy(prep.model)
    after = train_one(prep, data, epochs=2)  # epochs 0 and 1: head, then features.4
    moved = changed(before, after)
    assert moved["head.weight"] and moved["features.4.weight"]
    assert not moved["features.2.weight"] and not moved["features.0.weight"]


def test_l2sp_penalty_value_and_pull(data):
    params = {"features.0.weight": torch.ones(2, 2), "head.weight": torch.ones(3)}
    init = {"features.0.weight": torch.zeros(2, 2), "head.weight": torch.zeros(3)}
    assert st.l2sp_penalty(0.5)(params, init).item() == pytest.approx(0.5 * 0.5 * 4)
    far = {k: v.clone() for k, v in init.items()}
    far["features.0.weight"] += 2
    assert st.l2sp_penalty(0.5)(far, init).item() > st.l2sp_penalty(0.5)(params, init).item()
    # a strong penalty keeps the pretrained layers closer to their start than plain fine-tuning
    src = net()
    drift = {}
    for name, alpha in (("full_ft", 0.0), ("l2sp", 100.0)):
        prep = st.prepare(st.Strategy(name, l2sp=alpha), src, 4)
        after = train_one(prep, data, epochs=3)
        drift[name] = (after.features[0].weight - src.features[0].weight).norm().item()
    assert drift["l2sp"] < 0.5 * drift["full_ft"]


@pytest.mark.parametrize("name", ["lora", "adapters"])
def test_lora_and_adapters_start_as_identity_change(name):
    src = net()
    prep = st.prepare(name, src, 3)
    plain = st.prepare("full_ft", src, 3)
    x = torch.rand(5, 784)
    assert torch.allclose(prep.model.features(x), src.features(x), atol=1e-6)
    assert torch.allclose(prep.model.features(x), plain.model.features(x), atol=1e-6)


def test_parameter_counts_are_ordered():
    src = xu.models.MLP([784, 64, 32], 5)
    counts = {n: st.prepare(n, src, 5).trainable for n in st.STRATEGIES}
    head = 32 * 5 + 5
    assert counts["feature_extraction"] == head
    assert counts["full_ft"] == counts["scratch"] == xu.models.count_parameters(src)
    assert counts["lora"] == head + 4 * (784 + 64) + 4 * (64 + 32)
    assert counts["adapters"] == head + (64 * 16 + 16 + 16 * 64 + 64) + (32 * 16 + 16 + 16 * 32 + 32)
    assert counts["feature_extraction"] < counts["lora"] < counts["full_ft"]


def test_per_replica_multipliers_match_separate_runs(data):
    """Strategies trained together as replicas give what each gives alone."""
    src = net()
    names = ["feature_extraction", "full_ft", "discriminative"]
    preps = [st.prepare(n, src, 4, seed=2) for n in names]
    together = xu.ensemble.fit_replicas([p.model for p in preps], data, [0, 1, 2], epochs=2, lr=1e-2,
                                        batch_size=32, lr_mult=st.merge_multipliers(preps)).unstack()
    for i, n in enumerate(names):
        p = st.prepare(n, src, 4, seed=2)
        alone = xu.ensemble.fit_replicas([p.model], data, [i], epochs=2, lr=1e-2, batch_size=32,
                                         lr_mult=st.merge_multipliers([p])).unstack()[0]
        for (pn, a), b in zip(alone.named_parameters(), together[i].parameters()):
            assert torch.allclose(a, b, atol=1e-5), (n, pn)


def test_run_jobs_groups_and_reports(data):
    src = net()
    jobs = [st.Job(n, st.Strategy(n), src, data, s, data) for n in ("scratch", "lora", "l2sp") for s in (0, 1)]
    res = st.run_jobs(jobs, 4, steps=3, batch_size=32)
    assert [r.key for r in res] == [j.key for j in jobs] and [r.seed for r in res] == [0, 1] * 3
    assert all(0.0 <= r.test_acc <= 1.0 for r in res)
    summary = st.summarise(res)
    assert set(summary) == {"scratch", "lora", "l2sp"} and summary["lora"].n == 2
    assert res[2].trainable < res[0].trainable == res[0].total


def test_epochs_helpers():
    assert st.epochs_for(100, 50, 80) == 40
    assert st.epochs_for(30, 50, 5) == 5      # one batch of all 30 per epoch
    assert st.epochs_for(1000, 50, 80) == 4
    assert st.epochs_to_fraction([0.1, 0.5, 0.85, 0.9, 1.0], 0.9) == 4
    assert st.epochs_to_fraction([1.0, 0.5, 1.0]) == 1


def test_bad_arguments():
    with pytest.raises(ParameterError, match="strategy"):
        st.Strategy("finetune")
    with pytest.raises(ParameterError, match="gamma"):
        st.Strategy("discriminative", gamma=1.5)
    with pytest.raises(ParameterError, match="unfreeze_every"):
        st.Strategy("gradual", unfreeze_every=-1)
    with pytest.raises(ParameterError, match="jobs"):
        st.run_jobs([], 3, steps=1)
    with pytest.raises(ParameterError, match="name"):
        st.create_transfer_model("alexnet", 3)
    with pytest.raises(ParameterError, match="strategy"):
        st.create_transfer_model("resnet18", 3, strategy="lora")


# --- DANN ------------------------------------------------------------------------------------

def test_dann_forward_modes():
    model = st.DANN(net(), hidden=8)
    x = torch.rand(4, 784)
    assert model(x).shape == (4, 3)
    logits, domain = model(torch.cat([x, x, torch.full((4, 1), 0.5)], 1))
    assert logits.shape == (4, 3) and domain.shape == (8,)
    with pytest.raises(ParameterError):
        model(torch.rand(4, 100))


def test_dann_discriminator_and_feature_losses_have_opposite_signs():
    """Domain head descends the domain loss; features receive −λ times its gradient."""
    lam = 0.3
    torch.manual_seed(0)
    xs, xt = torch.rand(6, 784), torch.rand(6, 784) * 0.5
    labels = torch.cat([torch.zeros(6), torch.ones(6)])
    model = st.DANN(net(), hidden=8)
    _, dom = model(torch.cat([xs, xt, torch.full((6, 1), lam)], 1))
    F.binary_cross_entropy_with_logits(dom, labels).backward()
    rev = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    plain = model.domain(model.features(torch.cat([xs, xt]))).squeeze(-1)  # no reversal
    F.binary_cross_entropy_with_logits(plain, labels).backward()
    for n, p in model.named_parameters():
        if n.startswith("domain."):
            assert torch.allclose(rev[n], p.grad, atol=1e-6), n
        elif n.startswith("features."):
            assert torch.allclose(rev[n], -lam * p.grad, atol=1e-6), n
            assert p.grad.abs().sum() > 0
        else:
            assert n not in rev  # the class head gets no domain gradient


def test_dann_objective_ramps_lambda_and_combines_losses():
    obj = st.DANNObjective(total_steps=10)
    assert obj.ramp() == 0.0
    model = st.DANN(net(), hidden=8)
    source, target = xu.data.Split(torch.rand(8, 784), torch.randint(0, 3, (8,))), torch.rand(5, 784)
    split = st.dann_split(source, target, 0, lam_max=0.3)
    assert split.x.shape == (8, 2 * 784 + 1) and torch.equal(split.x[:, :784], source.x)
    assert all(any(torch.equal(row, t) for t in target) for row in split.x[:, 784:-1])
    assert torch.all(split.x[:, -1] == 0.3)
    loss = obj(model, split.x, split.y)
    expected_ce = F.cross_entropy(model(source.x), source.y)
    assert loss.item() > expected_ce.item() and obj.step == 1  # CE plus a positive domain loss
    obj.step = 10
    assert obj.ramp() == pytest.approx(xu.domain.dann_lambda(1.0))


def test_dann_objective_passes_the_ramped_lambda():
    seen = []

    def fake(x):
        seen.append(x[:, -1].clone())
        return torch.zeros(len(x), 3), torch.zeros(2 * len(x))
    obj = st.DANNObjective(total_steps=4)
    split = st.dann_split(xu.data.Split(torch.rand(6, 784), torch.zeros(6, dtype=torch.long)), torch.rand(6, 784), 0, 0.5)
    for _ in range(3):
        obj(fake, split.x, split.y)
    expected = [0.5 * xu.domain.dann_lambda(p / 4) for p in range(3)]
    assert [v[0].item() for v in seen] == pytest.approx(expected)


def test_fit_dann_trains_replicas_with_their_own_lambda():
    src = xu.data.Split(torch.rand(64, 784), torch.randint(0, 3, (64,)))
    nets = [net(), net()]
    rep = st.fit_dann(nets, src, [torch.rand(40, 784), torch.rand(40, 784)], [0, 0], steps=4, batch_size=32,
                      lam_max=[0.0, 1.0])
    assert rep.logits(torch.rand(5, 784)).shape == (2, 5, 3)
    assert len(rep.evaluate(src)) == 2
    with pytest.raises(ParameterError):
        st.fit_dann(nets, src, [torch.rand(40, 784)], [0, 1], steps=4)


# --- torchvision backbones --------------------------------------------------------------------

@pytest.mark.parametrize("name,top", [("resnet18", "layer4."), ("vit_b_16", "encoder.layers.encoder_layer_11.")])
def test_create_transfer_model_freezes_as_claimed(name, top):
    fe = st.create_transfer_model(name, 7, "feature_extraction")
    assert fe.head.out_features == 7
    trainable = {n for n, p in fe.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    ft = st.create_transfer_model(name, 7, "fine_tuning")
    names = [n for n, p in ft.named_parameters() if p.requires_grad]
    assert any(n.startswith("backbone." + top) for n in names)  # seed 003's ViT filter matched nothing
    assert all(n.startswith(("head.", "backbone." + top, "backbone.encoder.ln.")) for n in names)
    assert 0 < len(names) < len(list(ft.parameters()))


def test_create_transfer_model_forward_resnet18():
    model = st.create_transfer_model("resnet18", 4, "fine_tuning").eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
