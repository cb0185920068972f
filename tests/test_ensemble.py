import copy

import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError


@pytest.fixture(scope="module")
def small(mnist):
    return xu.data.sample(mnist.train, 1024, seed=0), xu.data.sample(mnist.test, 500, seed=0)


def make():
    return xu.models.MLP([784, 32, 16], 10)


def sequential(models, train, seeds, lrs, **kw):
    out = []
    for m, s, lr in zip(models, seeds, lrs):
        m = copy.deepcopy(m)
        xu.train.fit(m, train, seed=s, lr=lr, **kw)
        out.append(m)
    return out


def test_vectorized_equals_sequential(small):
    train, test = small
    seeds, lrs = [0, 1, 2], [1e-3, 3e-3, 1e-2]
    models = xu.ensemble.replicate(make, seeds)
    ref = sequential(models, train, seeds, lrs, epochs=2, batch_size=100)
    rep = xu.ensemble.fit_replicas(models, train, seeds, epochs=2, lr=lrs, batch_size=100, val=test)
    for m_ref, m_vec in zip(ref, rep.unstack()):
        for (n, a), b in zip(m_ref.named_parameters(), m_vec.parameters()):
            assert torch.allclose(a, b, atol=1e-5), n
    assert rep.evaluate(test) == pytest.approx([xu.train.evaluate(m, test) for m in ref], abs=2e-3)
    assert len(rep.history[0].loss) == 2 and len(rep.history[2].val_acc) == 2


def test_each_replica_stops_as_its_sequential_run_would(small):
    """Early stopping per replica: a replica out of patience leaves the step (and can no longer
    improve), so every replica equals its own sequential fit with the same patience."""
    train, test = small
    seeds, lrs = [0, 1, 2], [1e-2, 3e-3, 2e-4]
    models = xu.ensemble.replicate(make, seeds)
    ref, hists = [], []
    for m, s, lr in zip(models, seeds, lrs):
        m = copy.deepcopy(m)
        hists.append(xu.train.fit(m, train, seed=s, lr=lr, epochs=25, batch_size=100, val=test, patience=2))
        ref.append(m)
    rep = xu.ensemble.fit_replicas(models, train, seeds, epochs=25, lr=lrs, batch_size=100, val=test, patience=2)
    assert len({len(h.val_acc) for h in hists}) > 1, "the replicas should stop at different epochs"
    for h_ref, h_vec, m_ref, m_vec in zip(hists, rep.history, ref, rep.unstack()):
        assert h_vec.best_epoch == h_ref.best_epoch and len(h_vec.val_acc) == len(h_ref.val_acc)
        assert h_vec.val_acc == pytest.approx(h_ref.val_acc, abs=2e-3)
        # float rounding differs between a batched and a single matrix product, and compounds
        # over a long run: the same function, not the same bits
        assert xu.train.evaluate(m_vec, test) == pytest.approx(xu.train.evaluate(m_ref, test), abs=3e-3)
        assert max((a - b).abs().max().item() for a, b in zip(m_ref.parameters(), m_vec.parameters())) < 5e-3


def test_replicas_really_differ(small):
    train, test = small
    rep = xu.ensemble.fit_replicas(xu.ensemble.replicate(make, [0, 1]), train, [0, 1], epochs=1)
    logits = rep.logits(test.x)
    assert logits.shape == (2, 500, 10) and not torch.allclose(logits[0], logits[1])


def test_lr_mult_freezes_and_matches_param_groups(small):
    train, _ = small
    seeds = [3, 4]
    models = xu.ensemble.replicate(make, seeds)
    mult = {"features.0": 0.0, "head": 5.0}
    ref = []
    for m, s in zip(models, seeds):
        m = copy.deepcopy(m)
        xu.train.fit(m, train, epochs=1, seed=s, lr=1e-3, groups=xu.train.param_groups(m, 1e-3, mult))
        ref.append(m)
    rep = xu.ensemble.fit_replicas(models, train, seeds, epochs=1, lr=1e-3, lr_mult=mult)
    for m0, m_ref, m_vec in zip(models, ref, rep.unstack()):
        assert torch.equal(m_vec.features[0].weight, m0.features[0].weight)
        assert torch.allclose(m_vec.head.weight, m_ref.head.weight, atol=1e-5)


def test_schedule_and_penalty(small):
    train, _ = small
    models = xu.ensemble.replicate(make, [0])
    calls = []

    def schedule(epoch):
        calls.append(epoch)
        return {"features": 0.0} if epoch == 0 else {}

    huge = lambda p, p0: 1e6 * sum(((p[n] - p0[n]) ** 2).sum() for n in p)  # noqa: E731
    rep = xu.ensemble.fit_replicas(models, train, [0], epochs=2, lr_mult=schedule, penalty=huge)
    assert calls == [0, 1]
    # the L2-SP style penalty pins the weights near their start
    assert (rep.unstack()[0].features[2].weight - models[0].features[2].weight).abs().max() < 2e-3


def test_one_split_per_replica(small):
    train, test = small
    splits = [xu.data.sample(train, 200, seed=s) for s in (0, 1)]
    models = xu.ensemble.replicate(make, [0, 1])
    rep = xu.ensemble.fit_replicas(models, splits, [0, 1], epochs=1, batch_size=50)
    ref = sequential(models[1:], splits[1], [1], [1e-3], epochs=1, batch_size=50)[0]
    assert torch.allclose(rep.unstack()[1].head.weight, ref.head.weight, atol=1e-5)
    with pytest.raises(ParameterError, match="one split per replica"):
        xu.ensemble.fit_replicas(models, splits[:1], [0, 1], epochs=1)


def test_bad_arguments(small):
    train, _ = small
    models = xu.ensemble.replicate(make, [0, 1])
    with pytest.raises(ParameterError, match="seeds"):
        xu.ensemble.fit_replicas(models, train, [0], epochs=1)
    with pytest.raises(ParameterError, match="lr has 3 values"):
        xu.ensemble.fit_replicas(models, train, [0, 1], epochs=1, lr=[1e-3] * 3)
    with pytest.raises(ParameterError, match="seeds"):
        xu.ensemble.replicate(make, [1, 1])


def test_requires_grad_false_stays_frozen(small):
    train, _ = small
    models = xu.ensemble.replicate(make, [0, 1])
    for m in models:
        m.features.requires_grad_(False)
    rep = xu.ensemble.fit_replicas(models, train, [0, 1], epochs=1, lr_mult={"features": 1.0})
    for m0, m1 in zip(models, rep.unstack()):
        assert torch.equal(m0.features[0].weight, m1.features[0].weight)
        assert not torch.equal(m0.head.weight, m1.head.weight)
    with pytest.raises(ParameterError, match="nothing to train"):
        xu.ensemble.fit_replicas(models, train, [0, 1], epochs=1, lr_mult={"head": 0.0})


def test_early_stopping_keeps_each_replicas_best_epoch(mnist):
    """Replicas stop on validation accuracy; each keeps the weights of its own best epoch."""
    train = xu.data.sample(mnist.train, 600, seed=0)
    val = xu.data.sample(mnist.test, 300, seed=1)
    models = xu.ensemble.replicate(lambda: xu.models.MLP([784, 32], 10), [0, 1])
    rep = xu.ensemble.fit_replicas(models, train, [0, 1], epochs=30, lr=[3e-3, 1e-6], batch_size=100,
                                   val=val, patience=2)
    for k, h in enumerate(rep.history):
        assert 1 <= h.best_epoch <= h.epochs <= 30
        assert h.val_acc[h.best_epoch - 1] == max(h.val_acc)
        assert rep.evaluate(val)[k] == pytest.approx(max(h.val_acc))
    assert rep.history[0].epochs < 30  # the fast replica converged and the run stopped early
    with pytest.raises(xu.config.ParameterError, match="patience"):
        xu.ensemble.fit_replicas(models, train, [0, 1], epochs=3, patience=2)


def test_fit_early_stopping_restores_best(mnist):
    train = xu.data.sample(mnist.train, 600, seed=0)
    val = xu.data.sample(mnist.test, 300, seed=1)
    torch.manual_seed(0)
    model = xu.models.MLP([784, 32], 10)
    h = xu.train.fit(model, train, epochs=30, lr=3e-3, batch_size=100, val=val, patience=2)
    assert h.val_acc[h.best_epoch - 1] == max(h.val_acc) and h.epochs < 30
    assert xu.train.evaluate(model, val) == pytest.approx(max(h.val_acc))


# --- engines: the fused step (what a CUDA graph replays) equals the eager reference -------------

def assert_same_replicas(a, b, atol=1e-5):
    for nm in a.params:
        assert torch.allclose(a.params[nm], b.params[nm], atol=atol), nm
    for ha, hb in zip(a.history, b.history):
        assert ha.loss == pytest.approx(hb.loss, rel=1e-4) and ha.best_epoch == hb.best_epoch


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_fused_step_equals_eager(small, schedule):
    train, test = small
    seeds = [0, 1, 2]
    models = xu.ensemble.replicate(make, seeds)
    kw = dict(epochs=2, lr=[1e-3, 3e-3, 1e-2], batch_size=100, val=test, schedule=schedule)
    eager = xu.ensemble.fit_replicas(models, train, seeds, engine="eager", **kw)
    fused = xu.ensemble.fit_replicas(models, train, seeds, engine="fused", **kw)
    assert_same_replicas(eager, fused)


def test_fused_step_keeps_multipliers_frozen_parameters_and_hooks(small):
    """Per-replica multiplier lists, the epoch-function form, requires_grad=False, a penalty, an
    objective and per-replica data all give the eager path's weights."""
    train, test = small
    seeds = [0, 1]
    models = xu.ensemble.replicate(make, seeds)
    models[1].features[0].requires_grad_(False)
    splits = [xu.data.sample(train, 300, seed=s) for s in seeds]

    def mult(epoch):
        return {"features.0": [0.0, 1.0] if epoch == 0 else [1.0, 2.0], "head": 3.0}

    def l2(p, p0):
        return 0.1 * sum(((p[n] - p0[n]) ** 2).sum() for n in p)

    def smoothed(fmodel, xb, yb):
        return torch.nn.functional.cross_entropy(fmodel(xb), yb, label_smoothing=0.1)

    kw = dict(epochs=3, lr=2e-3, batch_size=50, lr_mult=mult, penalty=l2, objective=smoothed,
              val=test, patience=1)
    eager = xu.ensemble.fit_replicas(models, splits, seeds, engine="eager", **kw)
    fused = xu.ensemble.fit_replicas(models, splits, seeds, engine="fused", **kw)
    assert_same_replicas(eager, fused)
    assert torch.equal(fused.params["features.0.weight"][1], models[1].features[0].weight)


def test_onecycle_schedule_matches_fit(small):
    """The vectorized trainer's schedule is fit's: one replica equals one fit run."""
    train, _ = small
    models = xu.ensemble.replicate(make, [4])
    ref = sequential(models, train, [4], [5e-3], epochs=2, batch_size=128, schedule="onecycle")[0]
    for engine in ("eager", "fused"):
        rep = xu.ensemble.fit_replicas(models, train, [4], epochs=2, lr=5e-3, batch_size=128,
                                       schedule="onecycle", engine=engine)
        for a, b in zip(ref.parameters(), rep.unstack()[0].parameters()):
            assert torch.allclose(a, b, atol=1e-5), engine
    with pytest.raises(ParameterError, match="schedule"):
        xu.ensemble.fit_replicas(models, train, [4], epochs=1, schedule="cosine")


# --- device robustness --------------------------------------------------------------------------

def test_models_go_to_the_data_and_placeholders_are_refused(small):
    train, test = small
    models = xu.ensemble.replicate(make, [0, 1])
    models[1] = models[1].to(torch.float32)  # same device here; on a GPU test_cuda mixes devices
    rep = xu.ensemble.fit_replicas(models, train, [0, 1], epochs=1, val=test)
    assert rep.device == train.x.device
    meta = [models[0], make().to("meta")]
    with pytest.raises(ParameterError, match="meta"):
        xu.ensemble.fit_replicas(meta, train, [0, 1], epochs=1)
    with pytest.raises(ParameterError, match="meta"):
        xu.train.fit(make().to("meta"), train, epochs=1)


def test_batch_rows_equals_advanced_indexing():
    torch.manual_seed(0)
    idx = torch.randint(0, 7, (3, 4))
    x, y = torch.randn(7, 5), torch.randint(0, 9, (7,))
    xb, yb = xu.ensemble.batch_rows(x, y, idx)
    assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    xk, yk = torch.randn(3, 7, 5), torch.randint(0, 9, (3, 7))
    rows = torch.arange(3)[:, None]
    xb, yb = xu.ensemble.batch_rows(xk, yk, idx)
    assert torch.equal(xb, xk[rows, idx]) and torch.equal(yb, yk[rows, idx])
    soft = torch.rand(3, 7, 4)  # per-row targets (distillation's soft labels)
    assert torch.equal(xu.ensemble.batch_rows(xk, soft, idx)[1], soft[rows, idx])
    assert torch.equal(xu.ensemble.batch_rows(x, soft[0], idx)[1], soft[0][idx])


def test_evaluate_on_shared_split_objects_equals_stacked_copies(small):
    train, test = small
    other = xu.data.sample(train, 500, seed=3)
    rep = xu.ensemble.fit_replicas(xu.ensemble.replicate(make, [0, 1, 2]), train, [0, 1, 2], epochs=1)
    by_object = rep.evaluate([test, other, test])  # grouped by split object
    copies = [xu.data.Split(s.x.clone(), s.y.clone()) for s in (test, other, test)]
    assert by_object == pytest.approx(rep.evaluate(copies), abs=1e-9)  # stacked per replica
    assert rep.select([2, 0]).evaluate(test) == pytest.approx([by_object[2], by_object[0]])


def test_fit_replicas_takes_an_episode_sampler_and_a_score():
    """``batches`` replaces shuffled rows (the sampler sees which replicas still train) and
    ``score`` replaces validation accuracy: a score that never improves stops every replica
    after ``patience`` epochs, having kept epoch 1."""
    torch.manual_seed(0)
    data = xu.data.Split(torch.rand(32, 784), torch.randint(0, 3, (32,)))
    seen: list[list[int]] = []

    def sampler(epoch, alive):
        seen.append(list(alive))
        for i in range(2):
            rows = slice(i * 16, (i + 1) * 16)
            yield data.x[rows].expand(len(alive), -1, -1), data.y[rows].expand(len(alive), -1)

    models = xu.ensemble.replicate(lambda: xu.models.MLP([784, 8], 3), [0, 1])
    reps = xu.ensemble.fit_replicas(models, data, [0, 1], epochs=6, batches=sampler, score=lambda r: [0.5] * len(r),
                        patience=2)
    assert [h.best_epoch for h in reps.history] == [1, 1]
    assert len(seen) == 3 and seen[0] == [0, 1]
    assert all(len(h.loss) == 3 for h in reps.history)
    with pytest.raises(ParameterError, match="eager"):
        xu.ensemble.fit_replicas(models, data, [0, 1], epochs=1, batches=sampler, engine="fused")


def test_activation_floats_counts_every_layer_output():
    mlp = xu.models.MLP([784, 32, 16], 10)  # Linear, ReLU, Linear, ReLU, head
    assert xu.ensemble.activation_floats(mlp, 784) == 32 + 32 + 16 + 16 + 10
    lenet = xu.models.lenet5(10)  # the conv layers dominate: 6 maps of 24×24 twice, pooled to 12×12
    assert xu.ensemble.activation_floats(lenet, 784) > 2 * 6 * 24 * 24


def test_eval_rows_keeps_chunks_within_the_cpu_budget():
    lenet, budget = xu.models.lenet5(5), xu.ensemble.CPU_EVAL_FLOATS
    per = xu.ensemble.activation_floats(lenet, 784)
    for k in (1, 30, 150, 10_000):
        rows = xu.ensemble.eval_rows(lenet, k, 784, "cpu")
        assert 1 <= rows <= 8192
        assert rows == 1 or k * rows * per <= budget
    assert xu.ensemble.eval_rows(lenet, 150, 784, "cpu") < xu.ensemble.eval_rows(lenet, 30, 784, "cpu")
    assert xu.ensemble.eval_rows(lenet, 150, 784, "meta") == 8192  # accelerators: large chunks
    with pytest.raises(ParameterError, match="replicas"):
        xu.ensemble.eval_rows(lenet, 0, 784, "cpu")


def test_logits_in_chunks_equal_one_pass(small):
    _, test = small
    rep = xu.ensemble.fit_replicas(xu.ensemble.replicate(lambda: xu.models.lenet5(10), [0, 1]),
                                   xu.data.sample(test, 200, seed=1), [0, 1], epochs=1, batch_size=50)
    x = test.x[:300]
    assert torch.allclose(rep.logits(x), rep.logits(x, batch_size=300), atol=1e-5)
    assert torch.allclose(rep.logits(x, batch_size=7), rep.logits(x, batch_size=300), atol=1e-5)
