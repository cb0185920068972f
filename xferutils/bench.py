"""``python -m xferutils.bench``: the package's trainer against seed 002's own loop (chapter 1).

Measured in one process on the same network (784-512-256-128-10, Adam):
1. seed 002's loop as written: torchvision ``datasets.MNIST`` + ``ToTensor`` + ``DataLoader``
   (batch 64, Adam 1e-3, 5 epochs), against :func:`xferutils.train.fit` on resident tensors
   (batch 512, a one-cycle schedule, 3 epochs; fp32 and bf16 autocast) to the same test accuracy
   (within 0.5 points: the ``same_accuracy`` column);
2. K replicas trained as one vectorized model against K sequential runs.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import config, data, ensemble, models, train
from .results import atomic_write_text, results_dir


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """Run ``fn`` and return its result and wall time in seconds (device synchronised)."""
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def torchvision_root(dest: Path) -> Path:
    """A folder torchvision's ``MNIST`` reads offline: the checked IDX files, decompressed."""
    raw_src = data.data_dir() / "MNIST" / "raw"
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data.read_mnist_arrays()  # checks every file (and downloads if allowed) first
    for name in data.SHA256:
        src = raw_src / name
        if src.exists():
            shutil.copy(src, raw / name)
        else:
            with gzip.open(raw_src / f"{name}.gz", "rb") as fin, open(raw / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return dest


def seed_loop(root: Path, epochs: int, device: torch.device, limit: int | None = None,
              seed: int = 0) -> tuple[nn.Module, float]:
    """Seed 002's training loop as written (DataLoader, batch 64, Adam 1e-3); returns model, seconds."""
    from torchvision import datasets, transforms

    ds = datasets.MNIST(root=str(root), train=True, transform=transforms.ToTensor())
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(limit))
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    model = models.dense_net().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    crit = nn.CrossEntropyLoss()

    def run() -> None:
        for _ in range(epochs):
            for i, (xb, yb) in enumerate(loader):
                xb, yb = xb.to(device), yb.to(device)
                opt.zero_grad()
                loss = crit(model(xb.view(xb.size(0), -1)), yb)
                loss.backward()
                opt.step()
                if i % 100 == 0:
                    loss.item()  # the seed prints the loss every 100 steps: a host sync

    _, seconds = timed(run, device)
    return model, seconds


def package_fit(mnist: data.MNIST, epochs: int, batch_size: int, lr: float, amp: bool,
                limit: int | None = None, seed: int = 0, schedule: str = "onecycle") -> tuple[nn.Module, float]:
    """The package's trainer on resident tensors; returns model, seconds."""
    split = mnist.train if limit is None else data.Split(mnist.train.x[:limit], mnist.train.y[:limit])
    torch.manual_seed(seed)
    model = models.dense_net().to(split.x.device)
    _, seconds = timed(lambda: train.fit(model, split, epochs=epochs, lr=lr, batch_size=batch_size,
                                         seed=seed, amp=amp, schedule=schedule), split.x.device)
    return model, seconds


def replicas_vs_sequential(mnist: data.MNIST, k: int, epochs: int, batch_size: int, lr: float,
                           amp: bool, limit: int | None = None) -> dict[str, float]:
    """K replicas vectorized against K sequential runs of the same models and seeds."""
    split = mnist.train if limit is None else data.Split(mnist.train.x[:limit], mnist.train.y[:limit])
    device = split.x.device
    seeds = list(range(k))
    init = [m.to(device) for m in ensemble.replicate(models.dense_net, seeds)]
    rep, t_vec = timed(lambda: ensemble.fit_replicas(init, split, seeds, epochs=epochs, lr=lr,
                                                     batch_size=batch_size, amp=amp), device)
    seq_models = [models.dense_net().to(device) for _ in seeds]
    for m, m0 in zip(seq_models, init):
        m.load_state_dict(m0.state_dict())
    _, t_seq = timed(lambda: [train.fit(m, split, epochs=epochs, lr=lr, batch_size=batch_size,
                                        seed=s, amp=amp) for m, s in zip(seq_models, seeds)], device)
    acc_vec = rep.evaluate(mnist.test)
    acc_seq = [train.evaluate(m, mnist.test) for m in seq_models]
    return {"k": k, "vectorized_s": t_vec, "sequential_s": t_seq, "speedup": t_seq / t_vec,
            "acc_vectorized_mean": sum(acc_vec) / k, "acc_sequential_mean": sum(acc_seq) / k}


def run_bench(device: str = "auto", seed_epochs: int = 5, epochs: int = 3, batch_size: int = 512,
              lr: float = 5e-3, replicas: int = 8, replica_epochs: int = 1, limit: int | None = None,
              amp: str = "auto") -> dict:
    """Run every measurement and return the results as a dict."""
    dev = config.get_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(config.physical_cores())
    amp_modes = {"auto": [False] + ([True] if config.bf16_supported(dev) else []), "on": [True], "off": [False]}
    mnist = data.load_mnist(device=dev)
    out: dict = {"environment": config.environment_summary(dev), "seed_epochs": seed_epochs,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "limit": limit, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        model, secs = seed_loop(torchvision_root(Path(tmp)), seed_epochs, dev, limit)
    seed_acc = train.evaluate(model, mnist.test)
    out["rows"].append({"method": f"seed 002 loop ({seed_epochs} ep, DataLoader, batch 64, fp32)", "seconds": secs,
                        "test_acc": seed_acc, "speedup": 1.0})
    for amp_on in amp_modes[amp]:
        model, t = package_fit(mnist, epochs, batch_size, lr, amp_on, limit)
        acc = train.evaluate(model, mnist.test)
        out["rows"].append({"method": f"xferutils fit ({epochs} ep, batch {batch_size}, one-cycle, "
                                      f"{'bf16' if amp_on else 'fp32'})",
                            "seconds": t, "test_acc": acc, "speedup": secs / t,
                            "same_accuracy": abs(acc - seed_acc) <= 0.005 or acc > seed_acc})
    out["replicas"] = replicas_vs_sequential(mnist, replicas, replica_epochs, 256, 2e-3,
                                             amp=False, limit=limit)
    return out


def format_table(res: dict) -> str:
    """The results as a plain-text table."""
    lines = [res["environment"], f"{'method':<56} {'seconds':>8} {'test acc':>9} {'speedup':>8}"]
    for r in res["rows"]:
        lines.append(f"{r['method']:<56} {r['seconds']:8.2f} {100 * r['test_acc']:8.2f}% "
                     f"{r['speedup']:7.1f}x")
    rp = res["replicas"]
    lines.append(f"{rp['k']} replicas vectorized: {rp['vectorized_s']:.2f}s; sequential: "
                 f"{rp['sequential_s']:.2f}s; speedup {rp['speedup']:.2f}x "
                 f"(mean test acc {100 * rp['acc_vectorized_mean']:.2f}% vs "
                 f"{100 * rp['acc_sequential_mean']:.2f}%)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m xferutils.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=config.DEVICES)
    p.add_argument("--seed-epochs", type=int, default=5, help="epochs of the seed's loop (the seed: 5)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the package's trainer")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=5e-3, help="peak of the one-cycle schedule")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--replica-epochs", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--json", type=Path, default=None, help="output file (default results/bench/<device>.json)")
    a = p.parse_args(argv)
    config.check_int("--epochs", a.epochs, 1)
    config.check_int("--seed-epochs", a.seed_epochs, 1)
    config.check_int("--replicas", a.replicas, 1)
    if a.limit is not None:
        config.check_int("--limit", a.limit, 64, 60000)
    res = run_bench(a.device, a.seed_epochs, a.epochs, a.batch_size, a.lr, a.replicas, a.replica_epochs, a.limit, a.amp)
    print(format_table(res))
    path = a.json or results_dir() / "bench" / f"{config.get_device(a.device).type}.json"
    atomic_write_text(path, json.dumps(res, indent=2))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
