"""Per-layer learning-rate multipliers for fine-tuning (chapters 2, 3 and 5): discriminative
rates (each layer γ times the rate of the layer above, ULMFiT), gradual unfreezing (one more
layer from the top per stage) and freezing the bottom k layers (Yosinski et al.). A multiplier
map is ``{parameter name: factor}``; a schedule (:data:`Multipliers`) maps an epoch to one."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from xferutils.core.config import check_float, check_int

Multipliers = Callable[[int], dict[str, float]]


def layer_names(model: nn.Module) -> list[str]:
    """Module names of the linear layers l = 1..L, input to output (the head is layer L)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def discriminative_multipliers(model: nn.Module, gamma: float) -> dict[str, float]:
    """γ^(L−l) for the weight and bias of linear layer l (seed 004's layer-wise decay).

    The head (l = L) keeps the full rate and each layer below gets γ times the rate of the layer
    above it: with γ < 1 lower layers move less (ULMFiT's γ = 1/2.6); γ = 1 is full fine-tuning.
    """
    check_float("gamma", gamma, 0.0, 1.0)
    layers = layer_names(model)
    big_l = len(layers)
    return {f"{name}.{kind}": gamma ** (big_l - l)
            for l, name in enumerate(layers, start=1) for kind in ("weight", "bias")}


def unfrozen_layers(epoch: int, n_layers: int, every: int) -> int:
    """k(t): how many layers, counted from the top, train in ``epoch`` (1, then one more per stage)."""
    return min(n_layers, 1 + epoch // every)


def gradual_multipliers(model: nn.Module, every: int) -> Multipliers:
    """Gradual unfreezing: in epoch t only layers l > L − k(t) train (the others have multiplier 0)."""
    layers = layer_names(model)
    big_l = len(layers)

    def at(epoch: int) -> dict[str, float]:
        k = unfrozen_layers(epoch, big_l, every)
        return {f"{name}.{kind}": float(l > big_l - k)
                for l, name in enumerate(layers, start=1) for kind in ("weight", "bias")}
    return at


def frozen_bottom_multipliers(model: nn.Module, k: int) -> dict[str, float]:
    """Multiplier 0 for the first ``k`` linear layers, 1 for the others (Yosinski et al.'s
    "transfer the first k layers and freeze them"; the reference solution of an exercise)."""
    layers = layer_names(model)
    check_int("k", k, 0, len(layers))
    return {f"{name}.{kind}": float(l > k) for l, name in enumerate(layers, start=1)
            for kind in ("weight", "bias")}
