"""Document 002's sparse activation done right, its sparse network, and what sparsity costs (chapter 6).

The activation is a softmax over the hidden units whose entries at or below ``1/K`` are set to
zero: at most ``K − 1`` units can hold more than ``1/K`` of a distribution, so at most ``K − 1``
survive. It keeps the input's shape (a batch in, a batch out). :func:`sparse_code` returns the
same activation as (indices, values) of the survivors, and :func:`apply_linear` applies the
next linear layer to the survivors only, by gathering the matching columns of its weight. A
zeroed unit passes nothing forward, so its outgoing weights get no gradient; when no unit
survives, nothing reaches the layers below.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from xferutils.core.config import check_choice, check_int
from xferutils.pages.timing import timed

KINDS = ("softmax", "kwta")


def check_k(K: int) -> int:
    """``K`` ≥ 2: the softmax threshold is ``1/K`` and at most ``K − 1`` units survive."""
    return check_int("K", K, 2)


def sparse_softmax(x: torch.Tensor, K: int) -> torch.Tensor:
    """Softmax over the last axis with every entry ≤ 1/K set to zero; same shape as ``x``."""
    p = torch.softmax(x, -1)
    return p * (p > 1.0 / check_k(K))


def kwta(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-winners-take-all: the ``k`` largest entries of the last axis kept (all of them if the
    axis is shorter), the rest zero. A mask at the k-th largest value: no scatter into a new
    tensor, and its gradient is the same mask (entries tied with the k-th largest are all kept)."""
    k = check_int("k", k, 1)
    if k >= x.shape[-1]:
        return x
    with torch.no_grad():  # the threshold carries no gradient; unsorted top-k is cheaper
        kth = x.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    return torch.where(x >= kth, x, 0.0)


class SparseCode(NamedTuple):
    """The survivors of a sparse activation: ``idx`` and ``val``, each (n, K − 1); a slot whose
    value is 0 holds no survivor."""

    idx: torch.Tensor
    val: torch.Tensor


def sparse_code(x: torch.Tensor, K: int, kind: str = "softmax") -> SparseCode:
    """The activation as indices and values of at most ``K − 1`` survivors per row:
    :func:`sparse_softmax` (``softmax``) or :func:`kwta` with k = K − 1 (``kwta``)."""
    k = min(check_k(K) - 1, x.shape[-1])
    if check_choice("kind", kind, KINDS) == "kwta":
        top = x.topk(k, dim=-1)
        return SparseCode(top.indices, top.values)
    top = torch.softmax(x, -1).topk(k, dim=-1)
    return SparseCode(top.indices, top.values * (top.values > 1.0 / K))


def apply_linear(code: SparseCode, layer: nn.Linear) -> torch.Tensor:
    """``layer`` applied to a sparse activation, reading only the survivors' weight columns."""
    cols = layer.weight.T[code.idx]  # (n, K-1, out): one gathered column per survivor
    out = torch.einsum("nk,nko->no", code.val, cols)
    return out + layer.bias if layer.bias is not None else out


class SparseActivation(nn.Module):
    """The activation as a layer: ``softmax`` (document 002, threshold 1/K) or ``kwta`` (top K − 1)."""

    def __init__(self, K: int, kind: str = "softmax") -> None:
        super().__init__()
        self.K, self.kind = check_k(K), check_choice("kind", kind, KINDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_softmax(x, self.K) if self.kind == "softmax" else kwta(x, self.K - 1)

    def extra_repr(self) -> str:
        return f"K={self.K}, kind={self.kind}"


class SparseMLP(nn.Module):
    """Document 002's SparseNet, fixed: the dense net's layers with a sparse activation between them.

    Parameter names equal :class:`xferutils.core.models.MLP`'s, so a dense net's weights load as is.
    """

    def __init__(self, widths: Sequence[int], n_classes: int, K: int, kind: str = "softmax") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), SparseActivation(K, kind)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.modules() if isinstance(m, nn.Linear)]

    def sparse_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits through the gathered path, and each hidden layer's survivor count per sample."""
        linears, act = self.linears(), self.features[1]
        h, counts = linears[0](x.flatten(1)), []
        for layer in linears[1:]:
            code = sparse_code(h, act.K, act.kind)
            counts.append((code.val > 0).sum(-1))
            h = apply_linear(code, layer)
        return h, counts


def sparse_net(K: int = 10, kind: str = "softmax", n_classes: int = 10) -> SparseMLP:
    """The 784-512-256-128-10 network of document 002 with sparse activations."""
    return SparseMLP([784, 512, 256, 128], n_classes, K, kind)


@torch.no_grad()
def active_fraction(net: nn.Module, x: torch.Tensor) -> list[float]:
    """Fraction of units that are non-zero after each hidden activation, averaged over ``x``."""
    fractions, h = [], x.flatten(1)
    for m in net.features:
        h = m(h)
        if not isinstance(m, nn.Linear):
            fractions.append((h != 0).float().mean().item())
    return fractions


@torch.no_grad()
def multiply_adds(net: SparseMLP, x: torch.Tensor) -> dict[str, float]:
    """Multiply-adds per sample: the dense path, and the gathered sparse path as measured on ``x``
    (the first layer reads all 784 pixels either way)."""
    linears = net.linears()
    dense = sum(m.in_features * m.out_features for m in linears)
    _, counts = net.sparse_forward(x)
    first = linears[0].in_features * linears[0].out_features
    rest = sum(c.float().mean().item() * m.out_features for c, m in zip(counts, linears[1:]))
    return {"dense": float(dense), "sparse": first + rest, "first_layer": float(first)}


@torch.no_grad()
def path_times(net: SparseMLP, x: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Seconds per pass over ``x`` (best of ``repeats``): the masked dense path and the gathered
    sparse path, on ``x``'s device."""
    check_int("repeats", repeats, 1)
    out = {}
    for name, fn in (("dense", net), ("sparse", lambda inp: net.sparse_forward(inp)[0])):
        fn(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            with timed(x.device) as t:
                fn(x)
            best = min(best, t.wall)
        out[name] = best
    return out
