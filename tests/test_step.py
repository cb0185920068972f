"""The fused replica step (what a CUDA graph replays) and the choice of engine."""
import pytest
import torch
from torch.func import functional_call, vmap

import xferutils as xu
from xferutils.core.config import ParameterError
from xferutils.core.optim import adam_
from xferutils.core.step import ReplicaStep


def test_one_step_is_the_gradient_and_adam_of_each_replica():
    """Called with a batch of indices, the step updates every replica as its own gradient and
    Adam would, with its own rate, and sums the losses until epoch_losses() reads and resets them."""
    torch.manual_seed(0)
    base = torch.nn.Linear(4, 3).to("meta")
    params = {"weight": torch.randn(2, 3, 4), "bias": torch.randn(2, 3)}
    buffers: dict = {}
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))

    def loss_one(p, b, p0, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    batched = vmap(loss_one, in_dims=(0, 0, 0, 0, 0))
    ref = {n: t.clone() for n, t in params.items()}
    step = ReplicaStep(batched, params, buffers, {n: t.clone() for n, t in params.items()}, x, y, 5,
                       [1.0, 0.5], capture=False)
    rates = {n: torch.tensor([1e-2, 2e-2]) for n in params}
    step.set_rates(rates)
    moments = {n: (torch.zeros_like(t), torch.zeros_like(t)) for n, t in ref.items()}
    counts = {n: torch.zeros((), dtype=torch.float64) for n in ref}
    for i, factor in enumerate((1.0, 0.5)):
        idx = torch.stack([torch.arange(5) + 5 * (i % 2), torch.arange(5)])
        for n in params:
            params[n].requires_grad_(True)
        step(idx, ["weight", "bias"])
        xb, yb = x[idx], y[idx]
        live = {n: t.clone().requires_grad_(True) for n, t in ref.items()}
        losses = batched(live, buffers, live, xb, yb)
        grads = torch.autograd.grad(losses.sum(), list(live.values()))
        with torch.no_grad():
            adam_(list(ref.values()), list(grads), [moments[n][0] for n in ref], [moments[n][1] for n in ref],
                  [counts[n] for n in ref], [rates[n] * factor for n in ref])
        for n in ref:
            assert torch.allclose(params[n].detach(), ref[n], atol=1e-6), (i, n)
    assert step.epoch_losses().shape == (2,) and step.epoch_losses().abs().sum() == 0


def test_engine_choice():
    cpu = torch.device("cpu")
    assert xu.step.resolve_engine("auto", cpu) == "eager"
    assert xu.step.resolve_engine("auto", torch.device("cuda")) == "graph"
    assert xu.step.resolve_engine("fused", cpu) == "fused"
    with pytest.raises(ParameterError, match="engine='graph' needs a CUDA device"):
        xu.step.resolve_engine("graph", cpu)
    with pytest.raises(ParameterError, match="engine='turbo'"):
        xu.step.resolve_engine("turbo", cpu)


def test_only_graph_safe_objectives_are_recorded():
    """A CUDA graph would freeze an objective's Python state (a step counter): such objectives
    run fused unless they declare graph_safe."""
    cuda = torch.device("cuda")
    pure = lambda fmodel, xb, yb: fmodel(xb).sum()  # noqa: E731
    assert xu.step.choose_engine("auto", cuda, xu.ensemble.cross_entropy) == "graph"
    assert xu.step.choose_engine("auto", cuda, pure) == "fused"
    pure.graph_safe = True
    assert xu.step.choose_engine("auto", cuda, pure) == "graph"
    assert xu.step.choose_engine("auto", torch.device("cpu"), pure) == "eager"
    with pytest.raises(ParameterError, match="graph_safe"):
        xu.step.choose_engine("graph", cuda, lambda f, x, y: f(x).sum())


