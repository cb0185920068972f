"""The book's one Adam against torch.optim.Adam: both branches, shared and per-replica rates."""
import pytest
import torch

from xferutils.core.optim import adam_


def reference(p: torch.Tensor, grads: list[torch.Tensor], rates: list[float]) -> torch.Tensor:
    """K independent torch.optim.Adam runs, one per replica, stacked."""
    ref = [torch.nn.Parameter(p[k].clone()) for k in range(p.shape[0])]
    opts = [torch.optim.Adam([r], lr=lr) for r, lr in zip(ref, rates)]
    for g in grads:
        for k, (r, opt) in enumerate(zip(ref, opts)):
            r.grad = g[k].clone()
            opt.step()
    return torch.stack([r.detach() for r in ref])


@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("rates", [[1e-2, 1e-2], [1e-2, 1e-3], [1e-2, 0.0]])
def test_adam_equals_torch_adam(on_device, rates):
    torch.manual_seed(0)
    w, b = torch.randn(2, 4, 6), torch.randn(2, 4)
    gws = [torch.randn(2, 6, 4).transpose(1, 2) for _ in range(4)]  # non-contiguous, as vmap's
    gbs = [torch.randn(2, 4) for _ in range(4)]
    params = [w.clone(), b.clone()]
    ms, vs = [torch.zeros_like(t) for t in params], [torch.zeros_like(t) for t in params]
    counts = [torch.zeros((), dtype=torch.float64) for _ in params]
    for gw, gb in zip(gws, gbs):
        adam_(params, [gw, gb], ms, vs, counts, [torch.tensor(rates)] * 2, on_device=on_device)
    assert [c.item() for c in counts] == [4.0, 4.0]
    assert torch.allclose(params[0], reference(w, gws, rates), atol=1e-6)
    assert torch.allclose(params[1], reference(b, gbs, rates), atol=1e-6)
    if rates[1] == 0.0:  # a zero rate keeps that replica's weights exactly
        assert torch.equal(params[0][1], w[1]) and not torch.equal(params[0][0], w[0])


def test_both_branches_agree_and_an_empty_update_is_a_no_op():
    torch.manual_seed(1)
    p = torch.randn(3, 5)
    runs = []
    for on_device in (False, True):
        q, m, v, c = p.clone(), torch.zeros_like(p), torch.zeros_like(p), torch.zeros((), dtype=torch.float64)
        for _ in range(3):
            adam_([q], [torch.ones_like(p)], [m], [v], [c], [torch.tensor([1e-3, 2e-3, 3e-3])],
                  on_device=on_device)
        runs.append(q)
    assert torch.allclose(*runs, atol=1e-7)
    assert not torch.equal(runs[0], p)
    adam_([], [], [], [], [], [])


def test_replica_adam_equals_torch_adam_per_replica():
    """The stateful form (chapter 5's protonet and heads) is K independent torch.optim.Adam runs."""
    from xferutils.core.optim import ReplicaAdam
    torch.manual_seed(2)
    w = torch.randn(3, 4, 5, requires_grad=True)
    start = w.detach().clone()
    opt = ReplicaAdam([w], lr=1e-2)
    grads = [torch.randn(3, 4, 5) for _ in range(5)]
    for g in grads:
        opt.step([g])
    assert opt.counts[0].item() == 5.0
    assert torch.allclose(w.detach(), reference(start, grads, [1e-2] * 3), atol=1e-6)
    loss = (w ** 2).sum()  # and it takes autograd's gradients directly
    before = w.detach().clone()
    opt.step(torch.autograd.grad(loss, opt.params))
    assert not torch.equal(w.detach(), before)
