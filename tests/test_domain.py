"""Tests of xferutils.core.domain (chapter 3): gradient reversal, DANN and its training, the UCI digits."""
import pytest
import torch
from torch.func import vmap
from torch.nn import functional as F

import xferutils as xu
from xferutils.core.config import ParameterError
from toys import net


def test_grad_reverse_negates_gradient_with_lambda():
    x = torch.randn(6, requires_grad=True)
    y = xu.domain.grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * torch.arange(6.0)).sum().backward()
    assert torch.allclose(x.grad, -0.3 * torch.arange(6.0))


def test_grad_reverse_inside_vmap():
    w = torch.randn(3, 4, requires_grad=True)
    out = vmap(lambda wi: xu.domain.grad_reverse(wi, 2.0).sum())(w)
    out.sum().backward()
    assert torch.allclose(w.grad, torch.full((3, 4), -2.0))


def test_dann_lambda_ramp():
    assert xu.domain.dann_lambda(0.0) == 0.0
    assert 0.99 < xu.domain.dann_lambda(1.0) < 1.0


# --- DANN ------------------------------------------------------------------------------------

def test_dann_forward_modes():
    model = xu.domain.DANN(net(), hidden=8)
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
    model = xu.domain.DANN(net(), hidden=8)
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
    obj = xu.domain.DANNObjective(total_steps=10)
    assert obj.ramp() == 0.0
    model = xu.domain.DANN(net(), hidden=8)
    source, target = xu.data.Split(torch.rand(8, 784), torch.randint(0, 3, (8,))), torch.rand(5, 784)
    split = xu.domain.dann_split(source, target, 0, lam_max=0.3)
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
    obj = xu.domain.DANNObjective(total_steps=4)
    split = xu.domain.dann_split(xu.data.Split(torch.rand(6, 784), torch.zeros(6, dtype=torch.long)), torch.rand(6, 784), 0, 0.5)
    for _ in range(3):
        obj(fake, split.x, split.y)
    expected = [0.5 * xu.domain.dann_lambda(p / 4) for p in range(3)]
    assert [v[0].item() for v in seen] == pytest.approx(expected)


def test_fit_dann_trains_replicas_with_their_own_lambda():
    src = xu.data.Split(torch.rand(64, 784), torch.randint(0, 3, (64,)))
    nets = [net(), net()]
    rep = xu.domain.fit_dann(nets, src, [torch.rand(40, 784), torch.rand(40, 784)], [0, 0], steps=4, batch_size=32,
                      lam_max=[0.0, 1.0])
    x = torch.rand(5, 784)
    assert rep.logits(x).shape == (2, 5, 3)
    assert len(rep.evaluate(src)) == 2
    # each replica trains with its own lambda: the same run with lambda 0 for both replicas
    # gives replica 0 unchanged (its lambda is 0 in both runs) and replica 1 changed
    same = xu.domain.fit_dann(nets, src, [torch.rand(40, 784), torch.rand(40, 784)], [0, 0], steps=4,
                              batch_size=32, lam_max=[0.0, 0.0])
    assert rep.logits(x)[0].shape == same.logits(x)[0].shape
    torch.testing.assert_close(rep.logits(x)[0], same.logits(x)[0])
    assert not torch.allclose(rep.logits(x)[1], same.logits(x)[1])
    with pytest.raises(ParameterError):
        xu.domain.fit_dann(nets, src, [torch.rand(40, 784)], [0, 1], steps=4)


def test_fit_dann_early_stopping_on_source_validation():
    torch.manual_seed(0)
    src = xu.data.Split(torch.rand(64, 784), torch.randint(0, 3, (64,)))
    val = xu.data.Split(torch.rand(30, 784), torch.randint(0, 3, (30,)))
    nets = [net(), net()]
    rep = xu.domain.fit_dann(nets, src, [torch.rand(40, 784)] * 2, [0, 1], steps=2, batch_size=32,
                             val=val, patience=1, max_epochs=6)
    for h in rep.history:  # stopped on the source validation accuracy, best epoch kept
        assert 1 <= h.best_epoch <= len(h.val_acc) <= 6
        assert len(h.val_acc) == 6 or len(h.val_acc) - h.best_epoch >= 1
    kept = rep.evaluate(val)
    assert all(abs(k - h.val_acc[h.best_epoch - 1]) < 1e-6 for k, h in zip(kept, rep.history))
    with pytest.raises(ParameterError, match="patience"):
        xu.domain.fit_dann(nets, src, [torch.rand(40, 784)] * 2, [0, 1], steps=2, val=val, patience=0)


def test_dann_on_a_lenet_takes_flat_images():
    d = xu.domain.DANN(xu.models.lenet5(3))
    assert d.in_dim == 784
    logits, domain = d(torch.cat([torch.rand(4, 784), torch.rand(4, 784), torch.ones(4, 1)], dim=1))
    assert logits.shape == (4, 3) and domain.shape == (8,)


def test_uci_digits_look_like_mnist():
    u = xu.domain.uci_digits()
    assert u.x.shape == (1797, 784) and float(u.x.min()) >= 0.0 and float(u.x.max()) <= 1.0
    img = u.x.reshape(-1, 28, 28)
    assert float(img[:, :4].abs().sum()) == 0.0 and float(img[:, :, -4:].abs().sum()) == 0.0  # 20x20 box
    matched = xu.domain.uci_digits([3, 7], mean_intensity=0.13)
    assert abs(float(matched.x.mean()) - 0.13) < 0.005
    assert sorted(torch.unique(matched.y).tolist()) == [0, 1] and len(matched) < 400
    with pytest.raises(ParameterError, match="digits"):
        xu.domain.uci_digits([11])
    with pytest.raises(ParameterError, match="mean_intensity"):
        xu.domain.uci_digits(mean_intensity=2.0)
