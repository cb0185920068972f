"""The GPU path (issue 10): every chapter module's core functions at tiny scale on CUDA, models and
data on mixed devices, and the captured training step against the eager reference.

Skipped without a CUDA GPU (CI is CPU-only); ``python -m xferutils.gpucheck`` runs it on a GPU
machine. A chapter module that does not exist yet is skipped; a new chapter module joins by
adding its core functions to ``tests/test_chapter_modules_devices.py``, which runs them on the
CPU in every test run and on CUDA here.
"""
import copy
import importlib

import pytest
import torch
from torch.nn import functional as F

import xferutils as xu
from xferutils.core.data import Split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def module(name: str):
    """``xferutils.<name>``, or a skip when that chapter module does not exist (yet)."""
    try:
        return importlib.import_module(f"xferutils.{name}")
    except ModuleNotFoundError:
        pytest.skip(f"xferutils.{name} does not exist in this checkout")


def make():
    return xu.models.MLP([784, 32, 16], 10)


@pytest.fixture(scope="module")
def gpu_data(mnist):
    train = xu.data.sample(mnist.train, 1024, seed=0).to(CUDA)
    test = xu.data.sample(mnist.test, 500, seed=0)
    return train, test  # test stays on the CPU on purpose: mixed-device evaluation


def where(tensors) -> set[str]:
    return {t.device.type for t in tensors}


# --- the trainers ---------------------------------------------------------------------------------

def test_fit_moves_a_cpu_model_to_the_gpu_data(gpu_data):
    train, test = gpu_data
    torch.manual_seed(0)
    model = make()
    groups = xu.train.param_groups(model, 1e-3, {"head": 2.0})  # made before the move: still valid
    h = xu.train.fit(model, train, epochs=3, val=test, groups=groups, patience=2)
    assert where(model.parameters()) == {"cuda"}
    assert xu.train.evaluate(model, test) > 0.5 and h.best_epoch >= 1


def test_fit_replicas_stacks_models_from_both_devices(gpu_data):
    """Chapter 2's few-shot cell: trained replicas (on the GPU) plus fresh models (on the CPU)."""
    train, test = gpu_data
    first = xu.ensemble.fit_replicas([m.to(CUDA) for m in xu.ensemble.replicate(make, [0, 1])], train,
                                     [0, 1], epochs=1)
    mixed = first.unstack() + xu.ensemble.replicate(make, [2])
    assert where(p for m in mixed for p in m.parameters()) == {"cpu", "cuda"}
    rep = xu.ensemble.fit_replicas(mixed, train, [0, 1, 2], epochs=2, val=test, patience=1)
    assert rep.device.type == "cuda" and all(a > 0.3 for a in rep.evaluate(test))
    splits = [xu.data.sample(train, 200, seed=s) for s in (0, 1)]
    splits[1] = splits[1].to(CPU)  # one split per replica, on different devices
    rep2 = xu.ensemble.fit_replicas(xu.ensemble.replicate(make, [0, 1]), splits, [0, 1], epochs=1)
    assert rep2.device.type == "cuda"


def test_lora_and_adapters_on_a_gpu_model(gpu_data):
    train, test = gpu_data
    for wrap in (lambda m: xu.peft.add_lora(m, rank=2), lambda m: xu.peft.add_adapters(m, bottleneck=4)):
        m = wrap(make().to(CUDA))
        assert where(m.parameters()) == {"cuda"}
        rep = xu.ensemble.fit_replicas([m], train, [0], epochs=1)
        assert 0 <= rep.evaluate(test)[0] <= 1


def assert_close(a, b, atol=1e-4):
    for nm in a.params:
        assert torch.allclose(a.params[nm], b.params[nm], atol=atol), nm
    for ha, hb in zip(a.history, b.history):
        assert ha.loss == pytest.approx(hb.loss, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_graph_equals_fused_equals_eager(gpu_data, schedule):
    train, test = gpu_data
    seeds = [0, 1, 2]
    models = xu.ensemble.replicate(make, seeds)
    kw = dict(epochs=2, lr=[1e-3, 3e-3, 1e-2], batch_size=100, val=test, schedule=schedule)
    eager = xu.ensemble.fit_replicas(models, train, seeds, engine="eager", **kw)
    for engine in ("fused", "graph", "auto"):
        assert_close(eager, xu.ensemble.fit_replicas(models, train, seeds, engine=engine, **kw))


def test_graph_keeps_multipliers_frozen_parameters_hooks_and_early_stopping(gpu_data):
    train, test = gpu_data
    seeds = [0, 1]
    models = xu.ensemble.replicate(make, seeds)
    models[1].features[0].requires_grad_(False)
    splits = [xu.data.sample(train, 300, seed=s) for s in seeds]

    def mult(epoch):  # per-replica lists and a new trained set in epoch 1: a second graph
        return {"features.0": [0.0, 1.0] if epoch == 0 else [1.0, 2.0], "head": 3.0,
                "features.2": 0.0 if epoch == 0 else 1.0}

    def l2(p, p0):
        return 0.1 * sum(((p[n] - p0[n]) ** 2).sum() for n in p)

    def smoothed(fmodel, xb, yb):
        return F.cross_entropy(fmodel(xb), yb, label_smoothing=0.1)
    smoothed.graph_safe = True

    kw = dict(epochs=4, lr=2e-3, batch_size=50, lr_mult=mult, penalty=l2, objective=smoothed,
              val=test, patience=2)
    eager = xu.ensemble.fit_replicas(models, splits, seeds, engine="eager", **kw)
    graph = xu.ensemble.fit_replicas(models, splits, seeds, engine="graph", **kw)
    assert_close(eager, graph)
    assert [h.best_epoch for h in eager.history] == [h.best_epoch for h in graph.history]
    assert torch.equal(graph.params["features.0.weight"][1].cpu(), models[1].features[0].weight)


def test_stateful_objective_is_not_frozen_by_a_graph(gpu_data):
    """An objective with a Python step counter runs fused under engine='auto', as eager does."""
    train, _ = gpu_data

    class Ramped:
        def __init__(self):
            self.step = 0

        def __call__(self, fmodel, xb, yb):
            self.step += 1
            return F.cross_entropy(fmodel(xb), yb) * min(1.0, self.step / 10)

    models = xu.ensemble.replicate(make, [0])
    eager = xu.ensemble.fit_replicas(models, train, [0], epochs=1, objective=Ramped(), engine="eager")
    auto = xu.ensemble.fit_replicas(models, train, [0], epochs=1, objective=Ramped(), engine="auto")
    assert_close(eager, auto)


def test_one_replica_graph_matches_fit(gpu_data):
    train, _ = gpu_data
    models = xu.ensemble.replicate(make, [4])
    ref = copy.deepcopy(models[0])
    xu.train.fit(ref, train, epochs=2, lr=5e-3, batch_size=128, seed=4, schedule="onecycle")
    rep = xu.ensemble.fit_replicas(models, train, [4], epochs=2, lr=5e-3, batch_size=128, schedule="onecycle")
    for a, b in zip(ref.parameters(), rep.unstack()[0].parameters()):
        assert torch.allclose(a, b, atol=1e-4)


def test_amp_auto_on_cuda_is_fp32_with_tf32():
    use, why = xu.config.precision(CUDA)
    assert use is False and "TF32" in why
    assert "TF32" in xu.config.environment_summary(CUDA)


# --- chapter modules ------------------------------------------------------------------------------

def toy_split(n_per_class=32, n_classes=4, seed=0, device=CUDA) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return Split(torch.rand(len(y), 784, generator=g), y).to(device)


def test_strategies_on_gpu():
    st = module("strategies")
    data = toy_split()
    torch.manual_seed(0)
    src = xu.models.MLP([784, 16, 12, 8], 3).to(CUDA)
    for name in st.STRATEGIES:
        prep = st.prepare(name, src, 4, seed=1, epochs=4)  # new head made on the CPU: mixed devices
        rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=2, lr=1e-2, batch_size=32,
                                       lr_mult=st.merge_multipliers([prep]), penalty=prep.penalty)
        assert rep.device.type == CUDA.type and 0 <= rep.evaluate(data)[0] <= 1, name
    jobs = [st.Job(n, st.Strategy(n), src, data, s, toy_split(8, seed=1, device=CPU))
            for n in ("scratch", "lora", "l2sp") for s in (0, 1)]
    res = st.run_jobs(jobs, 4, steps=3, batch_size=32)
    assert all(0.0 <= r.test_acc <= 1.0 for r in res)
    source = toy_split(n_classes=3)
    rep = st.fit_dann([src, src], source, [torch.rand(40, 784, device=CUDA), torch.rand(40, 784)], [0, 0],
                      steps=4, batch_size=32, lam_max=[0.0, 1.0])
    assert rep.device.type == CUDA.type and len(rep.evaluate(source)) == 2


def test_framework_on_gpu():
    fw = module("framework")
    split = toy_split(n_per_class=50, n_classes=3)
    shifted = fw.covariate_shift(split, "noise", 0.3, seed=0)
    assert shifted.x.device.type == CUDA.type and torch.equal(shifted.y, split.y)
    resampled = fw.label_shift(split, [0.5, 0.3, 0.2], 60, seed=0)
    assert len(resampled) == 60
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(500, 20, generator=g).to(CUDA), torch.randn(500, 20, generator=g) + 3.0
    assert fw.proxy_a_distance(xs, xt, seed=0, n=400) > 1.9  # target on the CPU: mixed devices


def test_shared_layers_on_gpu(mnist):
    shared = module("shared_layers")
    case = shared.make_case("small")
    fast = shared.Settings(epochs=2, batch_size=64, width=16, proj_dim=8, n_bridge=5, memory_slots=4)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat_interleave(20)
    c1, c2 = torch.randn(5, 64, generator=g), torch.randn(5, 32, generator=g)
    feats = shared.Features((c1[y] + 0.1 * torch.randn(2, len(y), 64, generator=g)).to(CUDA),
                            (c2[y] + 0.1 * torch.randn(2, len(y), 32, generator=g)).to(CUDA), y.to(CUDA))
    for approach in shared.APPROACHES:
        out = shared.train_approach(approach, feats, case, [0, 1], fast)
        assert out.predict1(feats.f1).shape == (2, len(y)), approach
    test = Split(mnist.test.x[:600], mnist.test.y[:600]).to(CUDA)
    pools = shared.case_pools(mnist.train.to(CUDA), case, base_per_class=30, shared_per_class=20, val_per_class=10)
    recipe = shared.Recipe(epochs=1, lr=2e-3, batch_size=64, patience=1)
    bases = shared.trained_bases(case, pools, test, [0, 1], recipe)
    cf = shared.case_features(bases, pools, test, case)
    outcomes = {a: shared.train_approach(a, cf.train, case, [0, 1], fast, val=cf.val) for a in shared.APPROACHES}
    r = shared.CaseResult(case=case, seeds=[0, 1], bases=bases, features=cf, outcomes=outcomes, n_bridge=5,
                          probe=shared.probe(cf, case, [0, 1], 5),
                          scratch=shared.train_scratch(case, pools, test, [0, 1], recipe),
                          few_shot=shared.train_few_shot(case, pools, test, [0, 1], 5, recipe),
                          pixels=shared.pixel_baselines(case, pools, test, [0, 1], 5))
    assert set(r.metrics) == set(shared.APPROACHES)


def test_chapter_5_and_6_modules_on_gpu():
    """The core functions of chapters 5-6 (sparse codes, mixtures, distillation, prototypes) on
    CUDA agree with the CPU (tests/test_chapter_modules_devices.py runs the same on the CPU)."""
    from test_chapter_modules_devices import check_chapter_modules

    check_chapter_modules(CUDA)
