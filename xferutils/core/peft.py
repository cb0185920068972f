"""Parameter-efficient updates: LoRA (W + (α/r)·BA) and bottleneck adapters (chapters 2 and 3).

Both start as the identity change: LoRA's ``B`` and the adapter's up-projection are zero, so a
freshly wrapped network computes exactly what the pretrained one did. The new factors are
created on the wrapped layer's device and in its dtype, so a model on the GPU stays there.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from xferutils.core.config import check_float, check_int


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) · B A``."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0) -> None:
        super().__init__()
        self.rank = check_int("rank", rank, 1, min(base.in_features, base.out_features))
        self.scale = check_float("alpha", alpha, 0.0) / self.rank
        self.base = base.requires_grad_(False)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)

    def merged_weight(self) -> torch.Tensor:
        """The effective weight W + (α/r)·BA."""
        return self.base.weight + self.scale * self.lora_B @ self.lora_A


class Adapter(nn.Module):
    """Residual bottleneck ``h + W_up σ(W_down h)`` with a zero-initialised up-projection."""

    def __init__(self, dim: int, bottleneck: int = 16, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        like = {"device": device, "dtype": dtype}
        self.down = nn.Linear(check_int("dim", dim, 1), check_int("bottleneck", bottleneck, 1), **like)
        self.up = nn.Linear(bottleneck, dim, **like)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))


def add_lora(model: nn.Module, rank: int = 4, alpha: float = 8.0) -> nn.Module:
    """Wrap every ``nn.Linear`` of ``model.features`` in :class:`LoRALinear` (in place).

    The head is left as it is (a new head is trained in full); everything else is frozen.
    """
    model.requires_grad_(False)
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Linear):
            model.features[i] = LoRALinear(layer, rank, alpha)
    model.head.requires_grad_(True)
    return model


def add_adapters(model: nn.Module, bottleneck: int = 16) -> nn.Module:
    """Insert an :class:`Adapter` after every activation of ``model.features`` (in place).

    The pretrained layers are frozen; the adapters and the head are trainable. Each adapter is
    created on the device and in the dtype of the linear layer before it.
    """
    model.requires_grad_(False)
    layers: list[nn.Module] = []
    width, like = None, {}
    for layer in model.features:
        layers.append(layer)
        if isinstance(layer, nn.Linear):
            width, like = layer.out_features, {"device": layer.weight.device, "dtype": layer.weight.dtype}
        elif width is not None:
            layers.append(Adapter(width, bottleneck, **like))
    model.features = nn.Sequential(*layers)
    model.head.requires_grad_(True)
    return model
