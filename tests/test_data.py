import gzip
import shutil
from pathlib import Path

import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError
from xferutils.core.data import DataError


def test_mnist_shapes_and_range(mnist):
    assert mnist.train.x.shape == (60000, 784) and mnist.test.x.shape == (10000, 784)
    assert mnist.train.x.dtype == torch.float32 and mnist.train.y.dtype == torch.int64
    assert 0.0 <= mnist.train.x.min() and mnist.train.x.max() <= 1.0
    assert abs(mnist.train.x.mean().item() - 0.1307) < 1e-3  # the usual normalisation constant
    assert torch.bincount(mnist.test.y).tolist()[3] == 1010


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("XFER_DATA_DIR", str(tmp_path / "env"))
    assert xu.data.data_dir() == (tmp_path / "env").resolve()
    assert xu.data.data_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv("XFER_DATA_DIR")
    assert xu.data.data_dir() == xu.data.DEFAULT_DIR.resolve()


def _copy_raw(tmp_path: Path, decompress: bool) -> Path:
    src = xu.data.data_dir() / "MNIST" / "raw"
    dst = tmp_path / "MNIST" / "raw"
    dst.mkdir(parents=True)
    for name in xu.data.SHA256:
        if decompress:
            with gzip.open(src / f"{name}.gz", "rb") as fin, open(dst / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copy(src / f"{name}.gz", dst / f"{name}.gz")
    return dst


def test_plain_idx_files_load_like_gzipped(tmp_path, mnist):
    _copy_raw(tmp_path, decompress=True)
    arrays = xu.data.read_mnist_arrays(tmp_path, download=False)
    assert torch.equal(torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype("int64")), mnist.test.y)


def test_corrupt_file_fails_checksum(tmp_path):
    raw = _copy_raw(tmp_path, decompress=True)
    path = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[100] ^= 1
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte fails its checksum"):
        xu.data.read_mnist_arrays(tmp_path, download=False)


def test_truncated_gzip_is_reported(tmp_path):
    raw = _copy_raw(tmp_path, decompress=False)
    path = raw / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="corrupt or truncated"):
        xu.data.read_mnist_arrays(tmp_path, download=False)


def test_missing_folder_offline_says_where(tmp_path):
    with pytest.raises(DataError, match=r"MNIST/raw.*XFER_DATA_DIR"):
        xu.data.read_mnist_arrays(tmp_path / "nowhere", download=False)


def test_failed_download_says_where(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_internet(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_internet)
    with pytest.raises(DataError, match="could not be downloaded.*Put the four IDX files"):
        xu.data.read_mnist_arrays(tmp_path, download=True)


def test_subset_relabels_in_given_order(mnist):
    s = xu.data.subset(mnist.test, [7, 3])
    assert set(s.y.tolist()) == {0, 1}
    assert (s.y == 0).sum() == (mnist.test.y == 7).sum()
    raw = xu.data.subset(mnist.test, [7, 3], keep_digits=True)
    assert set(raw.y.tolist()) == {3, 7}
    with pytest.raises(ParameterError, match="digits"):
        xu.data.subset(mnist.test, [])


def test_few_shot_is_balanced_and_seeded(mnist):
    a = xu.data.few_shot(mnist.test, 5, seed=1)
    b = xu.data.few_shot(mnist.test, 5, seed=1)
    c = xu.data.few_shot(mnist.test, 5, seed=2)
    assert torch.bincount(a.y).tolist() == [5] * 10
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    with pytest.raises(ParameterError, match="n_per_class"):
        xu.data.few_shot(mnist.test, -3, seed=0)
    with pytest.raises(ParameterError, match="exceeds"):
        xu.data.few_shot(mnist.test, 5000, seed=0)


def test_sample_and_split(mnist):
    s = xu.data.sample(mnist.test, 100, seed=0)
    assert len(s) == 100
    train, val = xu.data.train_val_split(mnist.test, 1000, seed=0)
    assert len(train) == 9000 and len(val) == 1000
    both = torch.cat([train.x, val.x])
    assert torch.equal(both.sum(0), mnist.test.x.sum(0).to(both.dtype)) or torch.allclose(
        both.sum(0), mnist.test.x.sum(0))  # a partition of the data
    with pytest.raises(ParameterError, match="n_val"):
        xu.data.train_val_split(mnist.test, 0, seed=0)
    with pytest.raises(ParameterError, match="n=20000"):
        xu.data.sample(mnist.test, 20000, seed=0)


def test_rotation(mnist):
    x = mnist.test.x[:8]
    assert torch.allclose(xu.data.rotate(x, 0.0), x, atol=1e-5)
    twice = xu.data.rotate(xu.data.rotate(x, 90.0), 90.0)
    assert torch.allclose(twice, x.reshape(-1, 28, 28).flip(1, 2).reshape(x.shape), atol=1e-4)
    # a quarter turn moves the mass: the rotated image differs from the original
    assert (xu.data.rotate(x, 90.0) - x).abs().mean() > 0.05


def test_noise_seeded_and_clipped(mnist):
    x = mnist.test.x[:8]
    a = xu.data.add_noise(x, 0.5, seed=3)
    assert torch.equal(a, xu.data.add_noise(x, 0.5, seed=3))
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert torch.equal(xu.data.shift(x, "none", 1.0), x)
    assert torch.allclose(xu.data.shift(x, "invert", 1.0), 1 - x)
    with pytest.raises(ParameterError, match="kind='blur'"):
        xu.data.shift(x, "blur", 1.0)
    with pytest.raises(ParameterError, match="std"):
        xu.data.add_noise(x, -1.0, seed=0)
