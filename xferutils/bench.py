"""``python -m xferutils.bench``: the package's trainers against document 002's own loop (chapter 1).

Measured in one process on the same network (784-512-256-128-10, Adam):

1. document 002's loop as written: torchvision ``datasets.MNIST`` + ``ToTensor`` + ``DataLoader``
   (batch 64, Adam 1e-3, 5 epochs), against :func:`xferutils.core.train.fit` (the single-model
   reference; fp32, and bf16 autocast where the CPU/GPU has it) and
   :func:`xferutils.core.ensemble.fit_replicas` with one replica (its ``auto`` engine: a CUDA graph
   on a GPU), both on resident tensors (batch 512, a one-cycle schedule, 3 epochs), to the same
   test accuracy (within 0.5 points: the ``same_accuracy`` column);
2. replica scaling: K replicas trained as one vectorized model, in ms per model-epoch, against
   sequential :func:`~xferutils.core.train.fit` runs of the same models. The defaults fit the device
   (:data:`SIZED`): K = 1, 8 on 12,000 images on a CPU (a few minutes on 2 cores), K = 1, 8, 32,
   128 on all 60,000 on a GPU;
3. evaluation in chunks: K LeNet-5 replicas (chapter 3's CNN) predict the test images in one
   pass and in :func:`~xferutils.core.ensemble.eval_rows`'s chunks (K = 30 on 2,000 images;
   the logits must agree).

Prints three tables and writes JSON with every row. ``--quick`` is a seconds-long run (tests).
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xferutils.core import config, data, ensemble, models, train

from xferutils.pages import timing
from xferutils.pages.results import atomic_write_text, results_dir


def clocked(fn: Callable[[], object], device: torch.device) -> tuple[object, timing.Timer]:
    """Run ``fn``; return its result and its wall and CPU seconds (:func:`xferutils.pages.timing.timed`).

    On a shared CPU the wall clock counts other people's work too: the tables also give CPU
    time (user + system of this process), whose ratios are what contention does not inflate.
    """
    with timing.timed(device) as t:
        out = fn()
    return out, t


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
              seed: int = 0, timer: timing.Timer | None = None) -> tuple[nn.Module, float]:
    """Document 002's training loop as written (DataLoader, batch 64, Adam 1e-3); returns model, seconds.

    ``timer``, if given, receives the wall and CPU seconds of the training loop.
    """
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
                    loss.item()  # the document prints the loss every 100 steps: a host sync

    _, t = clocked(run, device)
    if timer is not None:
        timer.wall, timer.cpu = t.wall, t.cpu
    return model, t.wall


def package_fit(mnist: data.MNIST, epochs: int, batch_size: int, lr: float, amp: bool,
                limit: int | None = None, seed: int = 0, schedule: str = "onecycle",
                timer: timing.Timer | None = None) -> tuple[nn.Module, float]:
    """The package's trainer on resident tensors; returns model, seconds (``timer`` as :func:`seed_loop`)."""
    split = mnist.train if limit is None else data.Split(mnist.train.x[:limit], mnist.train.y[:limit])
    torch.manual_seed(seed)
    model = models.dense_net().to(split.x.device)
    _, t = clocked(lambda: train.fit(model, split, epochs=epochs, lr=lr, batch_size=batch_size,
                                     seed=seed, amp=amp, schedule=schedule), split.x.device)
    if timer is not None:
        timer.wall, timer.cpu = t.wall, t.cpu
    return model, t.wall


def package_replicas(mnist: data.MNIST, epochs: int, batch_size: int, lr: float, amp: bool,
                     limit: int | None = None, seed: int = 0, engine: str = "auto"
                     ) -> tuple[ensemble.Replicas, timing.Timer]:
    """The vectorized trainer with one replica (same model, seed and schedule as :func:`package_fit`)."""
    split = _limited(mnist.train, limit)
    init = ensemble.replicate(models.dense_net, [seed])
    return clocked(lambda: ensemble.fit_replicas(init, split, [seed], epochs=epochs, lr=lr,
                                                 batch_size=batch_size, amp=amp, schedule="onecycle",
                                                 engine=engine), split.x.device)


def _limited(split: data.Split, limit: int | None) -> data.Split:
    return split if limit is None else data.Split(split.x[:limit], split.y[:limit])


def scaling(mnist: data.MNIST, ks: list[int], epochs: int, batch_size: int, lr: float,
            engines: list[str], limit: int | None = None, seq_models: int = 8) -> list[dict]:
    """ms per model-epoch of K replicas trained as one model, against sequential ``fit`` runs.

    The sequential reference trains ``min(seq_models, max(ks))`` of the same models (same
    initial weights and seeds) one after another with :func:`xferutils.core.train.fit`; its ms per
    model-epoch times K is what K sequential runs cost (``speedup`` divides by that).
    """
    split = _limited(mnist.train, limit)
    device = split.x.device
    n_seq = min(seq_models, max(ks))
    ref = [m.to(device) for m in ensemble.replicate(models.dense_net, range(n_seq))]
    _, t_seq = clocked(lambda: [train.fit(m, split, epochs=epochs, lr=lr, batch_size=batch_size, seed=s)
                                for s, m in enumerate(ref)], device)
    seq_ms, seq_cpu_ms = (1000 * v / (n_seq * epochs) for v in (t_seq.wall, t_seq.cpu))
    acc_seq = [train.evaluate(m, mnist.test) for m in ref]
    rows = []
    for engine in engines:
        for k in ks:
            init = ensemble.replicate(models.dense_net, range(k))
            rep, t = clocked(lambda: ensemble.fit_replicas(init, split, list(range(k)), epochs=epochs, lr=lr,
                                                           batch_size=batch_size, engine=engine), device)
            acc = rep.evaluate(mnist.test)
            shared = min(k, n_seq)  # replicas also trained sequentially: their accuracies must agree
            rows.append({"k": k, "engine": engine, "resolved_engine": ensemble.resolve_engine(engine, device),
                         "epochs": epochs, "images": len(split), "batch_size": batch_size,
                         "seconds": t.wall, "cpu_seconds": t.cpu,
                         "ms_per_model_epoch": 1000 * t.wall / (k * epochs),
                         "cpu_ms_per_model_epoch": 1000 * t.cpu / (k * epochs),
                         "sequential_ms_per_model_epoch": seq_ms, "sequential_cpu_ms_per_model_epoch": seq_cpu_ms,
                         "sequential_models": n_seq,
                         "speedup": seq_ms * k * epochs / (1000 * t.wall),
                         "cpu_speedup": seq_cpu_ms * k * epochs / max(1000 * t.cpu, 1e-9),
                         "acc_mean": sum(acc) / k,
                         "max_acc_gap_to_sequential": max(abs(a - b) for a, b in zip(acc[:shared], acc_seq))})
    return rows


def eval_chunks(mnist: data.MNIST, k: int, n: int) -> dict:
    """Seconds for ``k`` LeNet-5 replicas to compute logits on ``n`` test images in one pass and
    in the chunks :meth:`~xferutils.core.ensemble.Replicas.logits` uses by default."""
    device = mnist.train.x.device
    rep = ensemble.fit_replicas(ensemble.replicate(models.lenet5, range(k)), data.sample(mnist.train, 256, seed=0),
                                list(range(k)), epochs=1, batch_size=64)
    x = mnist.test.x[:n]
    one, t_one = clocked(lambda: rep.logits(x, batch_size=n), device)
    chunked, t_chunked = clocked(lambda: rep.logits(x), device)
    return {"model": "lenet5", "k": k, "images": n, "rows_per_chunk": ensemble.eval_rows(rep.base, k, x.shape[-1], device),
            "seconds_one_pass": t_one.wall, "seconds_chunked": t_chunked.wall,
            "speedup": t_one.wall / max(t_chunked.wall, 1e-9),
            "max_abs_diff": float((one - chunked).abs().max())}


def run_bench(device: str = "auto", seed_epochs: int = 5, epochs: int = 3, batch_size: int = 512,
              lr: float = 5e-3, ks: tuple[int, ...] = (1, 8, 32, 128), replica_epochs: int = 2,
              limit: int | None = None, scaling_limit: int | None = None, amp: str = "auto",
              engines: tuple[str, ...] = ("auto",), seq_models: int = 8,
              eval_k: int = 30, eval_images: int = 2000) -> dict:
    """Run every measurement and return the results as a dict."""
    dev = config.get_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(config.physical_cores())
    config.use_tf32(dev)
    amp_modes = {"auto": [False] + ([True] if config.bf16_supported(dev) else []), "on": [True], "off": [False]}
    mnist = data.load_mnist(device=dev)
    out: dict = {"environment": config.environment_summary(dev), "seed_epochs": seed_epochs,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "limit": limit, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        secs = timing.Timer()
        model, _ = seed_loop(torchvision_root(Path(tmp)), seed_epochs, dev, limit, timer=secs)
    seed_acc = train.evaluate(model, mnist.test)
    out["rows"].append({"method": f"document 002 loop ({seed_epochs} ep, DataLoader, batch 64, fp32)",
                        "seconds": secs.wall, "cpu_seconds": secs.cpu, "test_acc": seed_acc,
                        "speedup": 1.0, "cpu_speedup": 1.0})

    def row(method: str, t: timing.Timer, acc: float) -> dict:
        return {"method": method, "seconds": t.wall, "cpu_seconds": t.cpu, "test_acc": acc,
                "speedup": secs.wall / t.wall, "cpu_speedup": secs.cpu / max(t.cpu, 1e-9),
                "same_accuracy": abs(acc - seed_acc) <= 0.005 or acc > seed_acc}

    what = f"{epochs} ep, batch {batch_size}, one-cycle"
    for amp_on in amp_modes[amp]:
        prec = "bf16" if amp_on else "fp32"
        t = timing.Timer()
        model, _ = package_fit(mnist, epochs, batch_size, lr, amp_on, limit, timer=t)
        out["rows"].append(row(f"xferutils fit ({what}, {prec})", t, train.evaluate(model, mnist.test)))
        for engine in engines:
            rep, t = package_replicas(mnist, epochs, batch_size, lr, amp_on, limit, engine=engine)
            name = ensemble.resolve_engine(engine, dev)
            out["rows"].append(row(f"xferutils fit_replicas K=1 {name} ({what}, {prec})", t,
                                   rep.evaluate(mnist.test)[0]))
    out["scaling"] = scaling(mnist, list(ks), replica_epochs, 256, 2e-3, list(engines),
                             scaling_limit if scaling_limit is not None else limit, seq_models)
    out["eval_chunks"] = eval_chunks(mnist, eval_k, eval_images)
    return out


def format_table(res: dict) -> str:
    """The results as two plain-text tables: equal accuracy, then replica scaling."""
    lines = [res["environment"], f"{'method':<66} {'wall s':>7} {'cpu s':>7} {'test acc':>9} "
                                 f"{'speedup':>8} {'(cpu)':>7}"]
    for r in res["rows"]:
        lines.append(f"{r['method']:<66} {r['seconds']:7.2f} {r['cpu_seconds']:7.2f} "
                     f"{100 * r['test_acc']:8.2f}% {r['speedup']:7.1f}x {r['cpu_speedup']:6.1f}x")
    sc = res["scaling"]
    if sc:
        lines.append(f"replica scaling ({sc[0]['images']} images, batch {sc[0]['batch_size']}, "
                     f"{sc[0]['epochs']} epochs; sequential: fit on {sc[0]['sequential_models']} models, "
                     f"{sc[0]['sequential_ms_per_model_epoch']:.1f} ms per model-epoch)")
        lines.append(f"{'K':>5} {'engine':>7} {'wall s':>7} {'ms/model-epoch':>15} {'speedup':>8} "
                     f"{'cpu ms/m-e':>11} {'(cpu)':>7} {'mean acc':>9} {'acc gap':>8}")
        for r in sc:
            lines.append(f"{r['k']:>5} {r['resolved_engine']:>7} {r['seconds']:7.2f} "
                         f"{r['ms_per_model_epoch']:15.2f} {r['speedup']:7.1f}x {r['cpu_ms_per_model_epoch']:11.2f} "
                         f"{r['cpu_speedup']:6.1f}x {100 * r['acc_mean']:8.2f}% "
                         f"{100 * r['max_acc_gap_to_sequential']:7.2f}")
    ev = res.get("eval_chunks")
    if ev:
        lines.append(f"evaluation ({ev['k']} {ev['model']} replicas, {ev['images']} images): one pass "
                     f"{ev['seconds_one_pass']:.2f} s, chunks of {ev['rows_per_chunk']} rows "
                     f"{ev['seconds_chunked']:.2f} s ({ev['speedup']:.1f}x; logits differ by at most "
                     f"{ev['max_abs_diff']:.1e})")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


SIZED = {  # defaults by device: a CPU run takes a few minutes, the GPU-sized scaling runs on a GPU
    "cpu": {"ks": [1, 8], "scaling_limit": 12000},
    "gpu": {"ks": [1, 8, 32, 128], "scaling_limit": None},
}
QUICK = {"seed_epochs": 1, "epochs": 1, "ks": [1, 2], "replica_epochs": 1, "limit": 512,
         "seq_models": 2, "amp": "off", "eval_k": 4, "eval_images": 200}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m xferutils.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=config.DEVICES)
    p.add_argument("--seed-epochs", type=int, default=5, help="epochs of the document's loop (the document: 5)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the package's trainers")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=5e-3, help="peak of the one-cycle schedule")
    p.add_argument("--ks", type=_ints, default=None,
                   help="replica counts, e.g. 1,8,32,128 (default: 1,8 on a CPU, 1,8,32,128 on a GPU)")
    p.add_argument("--replica-epochs", type=int, default=2, help="epochs of each scaling run")
    p.add_argument("--engines", default="auto",
                   help="fit_replicas engines to time, comma-separated: auto, eager, fused, graph")
    p.add_argument("--seq-models", type=int, default=8, help="models in the sequential reference")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--scaling-limit", type=int, default=None,
                   help="training images of the scaling runs (default: 12000 on a CPU, all on a GPU)")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run: 512 images, 1 epoch, K = 1, 2, fp32")
    p.add_argument("--json", type=Path, default=None, help="output file (default results/bench/<device>.json)")
    a = p.parse_args(argv)
    sized = SIZED["cpu" if config.get_device(a.device).type == "cpu" else "gpu"]
    a.ks = sized["ks"] if a.ks is None else a.ks
    if a.scaling_limit is None and a.limit is None:
        a.scaling_limit = sized["scaling_limit"]
    if a.quick:
        for key, value in QUICK.items():
            setattr(a, key, value)
    config.check_int("--epochs", a.epochs, 1)
    config.check_int("--seed-epochs", a.seed_epochs, 1)
    config.check_int("--replica-epochs", a.replica_epochs, 1)
    config.check_int("--seq-models", a.seq_models, 1)
    for k in a.ks:
        config.check_int("--ks", k, 1)
    if not a.ks:
        raise config.ParameterError("--ks needs at least one replica count, e.g. 1,8,32,128")
    engines = [e.strip() for e in a.engines.split(",")]
    for e in engines:
        config.check_choice("--engines", e, ensemble.ENGINES)
    for name in ("limit", "scaling_limit"):
        if getattr(a, name) is not None:
            config.check_int(f"--{name.replace('_', '-')}", getattr(a, name), 64, 60000)
    res = run_bench(a.device, a.seed_epochs, a.epochs, a.batch_size, a.lr, tuple(a.ks), a.replica_epochs,
                    a.limit, a.scaling_limit, a.amp, tuple(engines), a.seq_models,
                    getattr(a, "eval_k", 30), getattr(a, "eval_images", 2000))
    print(format_table(res))
    path = a.json or results_dir() / "bench" / f"{config.get_device(a.device).type}.json"
    atomic_write_text(path, json.dumps(res, indent=2))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
