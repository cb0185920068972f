"""MNIST as resident tensors, digit subsets, few-shot samples, splits and domain shifts.

Every chapter starts from :func:`load_mnist`. Images are float32 in [0, 1], flattened to 784
values, and live on the training device; everything else here is a seeded tensor operation.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from xferutils.core.config import ParameterError, check_choice, check_digits, check_float, check_int

DATA_ENV = "XFER_DATA_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data"

# SHA-256 of the *decompressed* IDX files (the .gz bytes differ between mirrors).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class DataError(RuntimeError):
    """MNIST files are missing, corrupt or cannot be downloaded."""


@dataclass(frozen=True)
class Split:
    """Images ``x`` (n, 784) in [0, 1] and integer labels ``y`` (n,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class MNIST:
    """The MNIST training and test sets, resident on ``train.x.device``."""

    train: Split
    test: Split


# --- files ------------------------------------------------------------------------------------

def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$XFER_DATA_DIR``, else ``<repo>/data``.

    Files live under ``<root>/MNIST/raw/`` as torchvision lays them out.
    """
    return Path(root or os.environ.get(DATA_ENV) or DEFAULT_DIR).expanduser().resolve()


def _read_bytes(raw: Path, name: str) -> bytes:
    """Decompressed content of ``name`` (``.gz`` or plain), checked by SHA-256."""
    for path, opener in ((raw / name, open), (raw / f"{name}.gz", gzip.open)):
        if path.exists():
            try:
                with opener(path, "rb") as fh:
                    content = fh.read()
            except (OSError, EOFError) as err:  # truncated or not gzip at all
                raise DataError(f"{path} is corrupt or truncated ({err}); replace it with a good "
                                f"copy (see README, 'Data')") from err
            digest = hashlib.sha256(content).hexdigest()
            if digest != SHA256[name]:
                raise DataError(f"{path} fails its checksum (SHA-256 of the decompressed content is "
                                f"{digest[:16]}..., expected {SHA256[name][:16]}...); replace it")
            return content
    raise FileNotFoundError(name)


def _parse_idx(content: bytes) -> np.ndarray:
    """Parse an IDX file of unsigned bytes into an array of its declared shape."""
    ndim = content[3]
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim)
    if content[2] != 0x08 or data.size != math.prod(shape):
        raise DataError(f"malformed IDX file: type {content[2]:#x}, shape {shape}, {data.size} bytes")
    return data.reshape(shape)


def _download(root: Path) -> None:
    try:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        for train in (True, False):
            TorchvisionMNIST(root=str(root), train=train, download=True)
    except Exception as err:  # no internet, or a mirror is down
        raise DataError(
            f"MNIST files are missing under {root / 'MNIST' / 'raw'} and could not be downloaded "
            f"({type(err).__name__}: {err}). Put the four IDX files (.gz or plain) there, or point "
            f"${DATA_ENV} at a folder that holds MNIST/raw/.") from err


def read_mnist_arrays(root: str | os.PathLike | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """The four MNIST arrays as uint8 NumPy arrays, keyed by file name (checked, not cached)."""
    root = data_dir(root)
    raw = root / "MNIST" / "raw"
    out = {}
    for name in SHA256:
        try:
            out[name] = _parse_idx(_read_bytes(raw, name))
        except FileNotFoundError:
            if not download:
                raise DataError(f"{raw / name}(.gz) is missing and download=False. Put the four "
                                f"MNIST IDX files in {raw}, or set ${DATA_ENV} to a folder that "
                                f"holds MNIST/raw/.") from None
            _download(root)
            out[name] = _parse_idx(_read_bytes(raw, name))
    return out


@lru_cache(maxsize=4)
def _load_cached(root: Path, device: str, download: bool) -> MNIST:
    arrays = read_mnist_arrays(root, download)

    def split(prefix: str) -> Split:
        x = torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte"].reshape(-1, 784).copy())
        y = torch.from_numpy(arrays[f"{prefix}-labels-idx1-ubyte"].astype(np.int64))
        return Split((x.to(device).float() / 255.0), y.to(device))

    return MNIST(train=split("train"), test=split("t10k"))


def load_mnist(root: str | os.PathLike | None = None, device: torch.device | str = "cpu",
               download: bool = True) -> MNIST:
    """Load MNIST (60k train, 10k test) onto ``device``; cached per root and device."""
    return _load_cached(data_dir(root), str(torch.device(device)), bool(download))


# --- subsets and samples ----------------------------------------------------------------------

def relabel(y: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Digits -> class indices: ``classes[i]`` becomes ``i``; digits outside ``classes`` become -1."""
    lookup = torch.full((10,), -1, dtype=torch.long, device=y.device)
    lookup[list(classes)] = torch.arange(len(classes), device=y.device)
    return lookup[y]


def subset(data: Split, digits: list[int], keep_digits: bool = False) -> Split:
    """Only the samples of ``digits``; digit ``digits[i]`` becomes class ``i`` unless
    ``keep_digits``."""
    digits = check_digits("digits", digits)
    classes = relabel(data.y, digits)
    keep = classes >= 0
    return Split(data.x[keep], data.y[keep] if keep_digits else classes[keep])


def per_class(data: Split, counts: Mapping[int, int], seed: int, name: str = "n_per_class") -> Split:
    """``counts[c]`` samples of each class ``c`` (labels kept), drawn without replacement by
    ``seed`` and shuffled together: the one per-class sampler of the book (few-shot sets, digit
    pools, label shift)."""
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    y = data.y.cpu()
    picks = []
    for c, k in counts.items():
        idx = torch.nonzero(y == c).flatten()
        if k > len(idx):
            raise ParameterError(f"{name}: {k} samples of class {c} requested, which exceeds the "
                                 f"{len(idx)} there are")
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    order = torch.cat(picks)
    order = order[torch.randperm(len(order), generator=gen)].to(data.y.device)
    return Split(data.x[order], data.y[order])


def few_shot(data: Split, n_per_class: int, seed: int) -> Split:
    """``n_per_class`` samples of every class present, drawn without replacement by ``seed``."""
    n_per_class = check_int("n_per_class", n_per_class, 1)
    return per_class(data, dict.fromkeys(torch.unique(data.y).tolist(), n_per_class), seed)


def sample(data: Split, n: int, seed: int) -> Split:
    """``n`` samples drawn uniformly without replacement by ``seed`` (``n`` ≤ len(data))."""
    n = check_int("n", n, 1, len(data))
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    idx = torch.randperm(len(data), generator=gen)[:n].to(data.y.device)
    return Split(data.x[idx], data.y[idx])


def train_val_split(data: Split, n_val: int, seed: int) -> tuple[Split, Split]:
    """Hold out ``n_val`` random samples for validation (model selection never uses the test set)."""
    n_val = check_int("n_val", n_val, 1, len(data) - 1)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    perm = torch.randperm(len(data), generator=gen).to(data.y.device)
    val, train = perm[:n_val], perm[n_val:]
    return Split(data.x[train], data.y[train]), Split(data.x[val], data.y[val])


# --- domain shifts ----------------------------------------------------------------------------

SHIFTS = ("rotate", "noise", "invert", "none")


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every 28×28 image by ``degrees`` (counter-clockwise, bilinear, zero fill)."""
    degrees = check_float("degrees", degrees, -360.0, 360.0)
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
    imgs = x.reshape(-1, 1, 28, 28)
    grid = torch.nn.functional.affine_grid(mat.expand(len(imgs), 2, 3), list(imgs.shape),
                                           align_corners=False)
    out = torch.nn.functional.grid_sample(imgs, grid, align_corners=False, padding_mode="zeros")
    return out.reshape(x.shape)


def add_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Add Gaussian pixel noise of standard deviation ``std`` (seeded), clipped to [0, 1]."""
    std = check_float("std", std, 0.0)
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return (x + std * noise).clamp_(0.0, 1.0)


def shift(x: torch.Tensor, kind: str, strength: float, seed: int = 0) -> torch.Tensor:
    """Apply a domain shift: ``rotate`` (degrees), ``noise`` (std), ``invert`` (blend 0-1), ``none``."""
    check_choice("kind", kind, SHIFTS)
    if kind == "rotate":
        return rotate(x, strength)
    if kind == "noise":
        return add_noise(x, strength, seed)
    if kind == "invert":
        a = check_float("strength", strength, 0.0, 1.0)
        return (1 - a) * x + a * (1 - x)
    return x
