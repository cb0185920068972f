"""Domain adaptation: gradient reversal and domain-adversarial training (DANN; chapters 3 and 4).

:class:`DANN` adds a domain head behind a gradient-reversal layer to a network; trained with
:class:`DANNObjective` (source cross-entropy plus the domain loss, λ ramped by Ganin et al.'s
fixed schedule λ_p = 2 / (1 + e^(−10p)) − 1) it pulls source and target features together
without any target label. :func:`fit_dann` trains many such networks as vectorized replicas,
for a fixed number of steps or (given source validation data) until the source validation
accuracy stops improving. :func:`uci_digits` is a real cross-dataset shift for MNIST networks:
scikit-learn's 8×8 UCI handwritten digits, resized to 28×28 and matched to MNIST's intensity.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from xferutils.core.config import ParameterError, check_digits, check_float, check_int
from xferutils.core.data import Split, relabel
from xferutils.core.ensemble import Replicas, fit_replicas


def grad_reverse(x: torch.Tensor, lam: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lam`` in the backward pass.

    Written without a custom autograd.Function, so it works inside ``torch.func.vmap``.
    """
    x0 = x.detach()
    return x0 - lam * (x - x0)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s ramp λ_p = 2 / (1 + exp(-γ p)) - 1 for training progress p in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DANN(nn.Module):
    """A feature extractor with a class head and a domain head behind gradient reversal.

    ``forward(x)`` on images (n, 784) gives class logits, so evaluation is as for any model.
    On a row ``[source image | target image | λ]`` (n, 2·784+1) it returns the class
    logits of the source images and the domain logits of all 2n images, computed on features
    passed through :func:`grad_reverse` with that λ.
    """

    def __init__(self, net: nn.Module, hidden: int = 64) -> None:
        super().__init__()
        self.features, self.head = net.features, net.head
        self.in_dim = getattr(net, "in_dim", None) or next(
            m for m in net.features.modules() if isinstance(m, nn.Linear)).in_features
        self.domain = nn.Sequential(nn.Linear(net.feature_dim, check_int("hidden", hidden, 1)),
                                    nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        d = self.in_dim
        if x.shape[-1] == d:
            return self.head(self.features(x))
        if x.shape[-1] != 2 * d + 1:
            raise ParameterError(f"DANN input must have {d} or {2 * d + 1} columns, got {x.shape[-1]}")
        xs, xt, lam = x[:, :d], x[:, d:2 * d], x[:, 2 * d:]
        feats = self.features(torch.cat([xs, xt]))
        logits = self.head(feats[:len(xs)])
        domain = self.domain(grad_reverse(feats, torch.cat([lam, lam]))).squeeze(-1)
        return logits, domain


def dann_split(source: Split, target_x: torch.Tensor, seed: int, lam_max: float = 1.0) -> Split:
    """Training rows ``[source image | a random target image | λ_max]`` with the source labels.

    The last column carries the replica's largest reversal weight, so that replicas with
    different λ_max train together; :class:`DANNObjective` scales it by the ramp.
    """
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    check_float("lam_max", lam_max, 0.0)
    idx = torch.randint(len(target_x), (len(source),), generator=gen).to(target_x.device)
    lam = source.x.new_full((len(source), 1), lam_max)
    return Split(torch.cat([source.x, target_x[idx], lam], dim=1), source.y)


def _sample_rows(data: Split, n: int, seed: int) -> Split:
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].to(data.y.device)
    return Split(data.x[idx], data.y[idx])


class DANNObjective:
    """Source cross-entropy plus the domain loss, with λ ramped over ``total_steps`` (Ganin et al.).

    λ at progress p is λ_max · (2 / (1 + e^(−γp)) − 1), with λ_max read from the rows of
    :func:`dann_split`. The domain head descends the domain loss; the gradient reversal makes
    the features ascend it (scaled by λ), which pushes source and target features together.
    """

    def __init__(self, total_steps: int, gamma: float = 10.0) -> None:
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.gamma = check_float("gamma", gamma, 0.0)
        self.step = 0

    def ramp(self) -> float:
        return dann_lambda(min(1.0, self.step / self.total_steps), self.gamma)

    def __call__(self, fmodel: Callable, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        ramp = self.ramp()
        self.step += 1
        logits, domain = fmodel(torch.cat([xb[:, :-1], xb[:, -1:] * ramp], dim=1))
        n = yb.shape[0]
        labels = torch.cat([domain.new_zeros(n), domain.new_ones(n)])
        return F.cross_entropy(logits, yb) + F.binary_cross_entropy_with_logits(domain, labels)


def fit_dann(sources: Sequence[nn.Module], source: Split, target_x: Sequence[torch.Tensor],
             seeds: Sequence[int], *, steps: int, lr: float = 1e-3, batch_size: int = 128,
             lam_max: float | Sequence[float] = 1.0, hidden: int = 64,
             val: Split | Sequence[Split] | None = None, patience: int = 3,
             max_epochs: int = 30) -> Replicas:
    """DANN from pretrained source models (their own heads kept), one replica per entry.

    Replica j starts from ``sources[j]`` (domain head seeded by ``seeds[j]``), adapts to the
    unlabelled ``target_x[j]`` with weight ``lam_max[j]`` (or one for all), and runs about
    ``steps`` optimizer steps: with fewer than one epoch's worth, each replica trains on its
    own seeded slice of ``source``. Seeds may repeat across replicas (e.g. one per target).

    Without ``val`` that is all (λ ramps over the ``steps``). With ``val`` (labelled *source*
    validation data: no target label is used) the ``steps`` are the ramp only; training then
    goes on at λ_max, one epoch per pass over the replica's slice, until the source validation
    accuracy has not improved for ``patience`` epochs (at most ``max_epochs``), and each
    replica keeps its best such epoch (``history[j].best_epoch``, counted after the ramp).
    """
    k = len(seeds)
    lams = [lam_max] * k if isinstance(lam_max, (int, float)) else list(lam_max)
    if not (len(sources) == len(target_x) == len(lams) == k) or k == 0:
        raise ParameterError("give one source model, one target set, one seed (and one lam_max) per replica")
    seeds = [check_int(f"seeds[{j}]", s, 0) for j, s in enumerate(seeds)]
    if val is not None:
        check_int("patience", patience, 1)
        check_int("max_epochs", max_epochs, 1)
    models = []
    for net, s in zip(sources, seeds):
        torch.manual_seed(s)
        models.append(DANN(copy.deepcopy(net), hidden))
    n = min(len(source), check_int("steps", steps, 1) * batch_size)
    train = [dann_split(_sample_rows(source, n, s) if n < len(source) else source, t, s, lam)
             for s, t, lam in zip(seeds, target_x, lams)]
    per_epoch = max(1, n // min(batch_size, n))
    epochs = max(1, math.ceil(steps / per_epoch))
    total = epochs * per_epoch
    order = [1000 * j + s for j, s in enumerate(seeds)]
    objective = DANNObjective(total)
    ramp = fit_replicas(models, train, order, epochs=epochs, lr=lr, batch_size=batch_size,
                        objective=objective)
    if val is None:
        return ramp
    return fit_replicas(ramp.unstack(), train, [o + 1 for o in order], epochs=max_epochs, lr=lr,
                        batch_size=batch_size, objective=objective, val=val, patience=patience)


UCI_SIDE = 20  # MNIST's digits are scaled into a 20×20 box and centred in 28×28 (LeCun et al.)


def uci_digits(digits: Sequence[int] | None = None, mean_intensity: float | None = None,
               device: torch.device | str = "cpu") -> Split:
    """scikit-learn's UCI handwritten digits (1,797 images of 8×8, grey levels 0–16; shipped with
    the package, no download) as MNIST-like 28×28 images in [0, 1].

    Each image is scaled to [0, 1] (÷16), resized bilinearly to MNIST's 20×20 digit box and
    padded to 28×28; then, if ``mean_intensity`` is given (e.g. the MNIST training images'
    mean pixel), all images are multiplied by one factor so that their mean pixel matches it
    (clipped to [0, 1]). ``digits`` keeps those digits, relabelled 0..k−1 as :func:`subset` does.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(UCI_SIDE, UCI_SIDE), mode="bilinear", align_corners=False)
    pad = (28 - UCI_SIDE) // 2
    x = F.pad(x, (pad, pad, pad, pad)).flatten(1).clamp(0.0, 1.0)
    if mean_intensity is not None:
        target = check_float("mean_intensity", mean_intensity, 1e-3, 1.0)
        for _ in range(5):  # clipping lowers the mean a little: re-scale a few times
            x = (x * (target / x.mean())).clamp(0.0, 1.0)
    y = torch.tensor(d.target, dtype=torch.long)
    if digits is not None:
        digits = check_digits("digits", digits)
        cls = relabel(y, digits)
        keep = cls >= 0
        x, y = x[keep], cls[keep]
    return Split(x.to(device), y.to(device))


__all__ = ["grad_reverse", "dann_lambda", "DANN", "dann_split", "DANNObjective", "fit_dann", "uci_digits"]
