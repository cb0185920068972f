"""The book's networks, each split into a feature extractor φ and a head g (f = g∘φ).

- :func:`dense_net`: 784-512-256-128-10, the dense network of document 002 (chapters 1, 4, 5).
- :func:`wide_nn` and :func:`deep_nn`: WideNN and DeepNN of document 000 (chapters 3, 5).
- :func:`lenet5`: a LeNet-5-sized convolutional network (chapter 3's shift experiments, where a
  rotation must be a geometric change and not a fixed permutation of the inputs).
- :func:`create_transfer_model`: document 003's torchvision-backbone helper, corrected (chapter 3);
  :func:`check_weights` refuses missing pretrained weights offline, before any work.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from xferutils.core.config import ParameterError, check_choice, check_int


class MLP(nn.Module):
    """A ReLU multilayer perceptron ``head(features(x))`` on flattened 28×28 images.

    ``dropout`` (default 0: off) drops each hidden unit with that probability while the module
    is in training mode (after every hidden ReLU, as Hinton et al.'s teacher; it adds no
    parameters). Evaluate such a network in ``eval()`` mode.
    """

    def __init__(self, widths: Sequence[int], n_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [check_int("width", w, 1) for w in widths]
        check_int("n_classes", n_classes, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout={dropout!r} is not allowed; give a probability in [0, 1)")
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features φ(x)."""
        return self.features(x.flatten(1))


def dense_net(n_classes: int = 10) -> MLP:
    """Document 002's DenseNet: 784-512-256-128 features and a 128→classes head."""
    return MLP([784, 512, 256, 128], n_classes)


def wide_nn(n_classes: int = 10) -> MLP:
    """Document 000's WideNN: 6 linear layers, widest 256, 64-d penultimate features."""
    return MLP([784, 256, 256, 128, 128, 64], n_classes)


def deep_nn(n_classes: int = 10) -> MLP:
    """Document 000's DeepNN: 8 linear layers, widest 128, 32-d penultimate features."""
    return MLP([784, 128, 128, 128, 64, 64, 32, 32], n_classes)


def hinton_mlp(hidden: int = 800, n_classes: int = 10, dropout: float = 0.0) -> MLP:
    """Hinton et al. (2015)'s MNIST networks: two hidden ReLU layers of ``hidden`` units
    (1200 with dropout for their teacher, 800 for their student)."""
    return MLP([784, check_int("hidden", hidden, 1), hidden], n_classes, dropout=dropout)


class LeNet(nn.Module):
    """LeNet-5's shape on 28×28 digits: two 5×5 convolutions (``c1``, ``c2`` channels), each with
    ReLU and 2×2 max pooling, then fully connected layers ``fc`` and a linear ``head``.

    Like :class:`MLP` it is ``head(features(x))`` and takes flattened images (n, 784) or
    (n, 1, 28, 28); ``in_dim`` is the flattened input size. Its convolutions share weights
    across positions, so a rotated image is a different input, not a permuted one.
    """

    in_dim = 784

    def __init__(self, n_classes: int, c1: int = 6, c2: int = 16, fc: Sequence[int] = (120, 84)) -> None:
        super().__init__()
        c1, c2 = check_int("c1", c1, 1), check_int("c2", c2, 1)
        fc = [check_int("fc", w, 1) for w in fc]
        check_int("n_classes", n_classes, 1)
        layers: list[nn.Module] = [nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, c1, 5), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Flatten()]
        for w_in, w_out in zip([c2 * 4 * 4, *fc[:-1]], fc):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(fc[-1] if fc else c2 * 16, n_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features φ(x)."""
        return self.features(x.flatten(1))


def lenet5(n_classes: int = 10) -> LeNet:
    """LeNet-5 (LeCun et al. 1998) sized for 28×28 inputs: conv 6@5×5, pool, conv 16@5×5, pool,
    120-84 fully connected, a linear head (about 44,000 parameters for 10 classes)."""
    return LeNet(n_classes)


ARCHITECTURES = {"dense": dense_net, "wide": wide_nn, "deep": deep_nn}


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The linear layers of ``model`` from input to output (the l = 1..L of layer-wise rules)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def embed(model: MLP, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Penultimate features of many inputs, in batches, without gradients."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


# --- torchvision backbones (document 003, corrected) --------------------------------------------------

BACKBONES = ("resnet18", "resnet50", "vit_b_16")
TV_STRATEGIES = ("feature_extraction", "fine_tuning")


def weights_file(name: str, weights: str) -> tuple[Path, str]:
    """Where torch looks for the ``weights`` of backbone ``name`` (its hub cache), and their URL."""
    import torchvision.models as tvm

    check_choice("name", name, BACKBONES)
    enum = tvm.get_model_weights(name)
    try:
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except KeyError:
        raise ParameterError(f"weights={weights!r} is not a weights name of {name}; choose one of "
                             f"{['DEFAULT', *enum.__members__]}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name, w.url


def check_weights(name: str, weights: str) -> Path:
    """The local file of pretrained ``weights``, or one clear error saying which file to put where.

    Nothing is downloaded: on a machine without internet torchvision would otherwise wait for
    a network timeout and end in a raw ``URLError``.
    """
    path, url = weights_file(name, weights)
    if not path.is_file():
        raise ParameterError(
            f"pretrained weights {weights!r} for {name} need the file {path.name} in {path.parent} "
            f"(torch's hub cache; set TORCH_HOME to move it). Download {url} on a machine with "
            "internet access and copy it there, or leave the weights empty to skip this example.")
    return path


def create_transfer_model(name: str, num_classes: int, strategy: str = "feature_extraction",
                          weights: str | None = None) -> nn.Sequential:
    """A torchvision backbone with a new ``head``; ``weights=None`` builds it randomly initialised.

    ``feature_extraction`` freezes the whole backbone; ``fine_tuning`` also trains its last
    stage (ResNet ``layer4``; ViT's last encoder block and final norm). Document 003 matched ViT's
    last block as ``'encoder.layers.11'``, a name torchvision does not use
    (``encoder.layers.encoder_layer_11``), so its ViT "fine-tuning" trained only the head; it
    also used the removed ``pretrained=True`` argument. ``weights`` is a torchvision weights
    name such as ``"DEFAULT"``; its file must already be in torch's cache (:func:`check_weights`).
    """
    check_choice("name", name, BACKBONES)
    check_int("num_classes", num_classes, 1)
    check_choice("strategy", strategy, TV_STRATEGIES)
    if weights:
        check_weights(name, weights)
    import torchvision.models as tvm

    backbone = getattr(tvm, name)(weights=weights or None)
    if name.startswith("resnet"):
        dim, top = backbone.fc.in_features, ("layer4.",)
        backbone.fc = nn.Identity()
    else:
        dim = backbone.heads.head.in_features
        top = (f"encoder.layers.encoder_layer_{len(backbone.encoder.layers) - 1}.", "encoder.ln.")
        backbone.heads = nn.Identity()
    for pname, p in backbone.named_parameters():
        p.requires_grad_(strategy == "fine_tuning" and pname.startswith(top))
    return nn.Sequential(OrderedDict(backbone=backbone, head=nn.Linear(dim, num_classes)))
