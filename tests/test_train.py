import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError


@pytest.fixture(scope="module")
def small(mnist):
    return xu.data.sample(mnist.train, 2048, seed=0), xu.data.sample(mnist.test, 1000, seed=0)


def test_fit_learns_and_records_history(small):
    train, test = small
    torch.manual_seed(0)
    m = xu.models.MLP([784, 64], 10)
    before = xu.train.evaluate(m, test)
    h = xu.train.fit(m, train, epochs=3, lr=3e-3, batch_size=128, val=test)
    assert len(h.loss) == 3 and len(h.val_acc) == 3
    assert h.loss[-1] < h.loss[0]
    assert xu.train.evaluate(m, test) > before + 0.3


def test_fit_is_reproducible(small):
    train, _ = small
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = xu.models.MLP([784, 32], 10)
        xu.train.fit(m, train, epochs=1, seed=5, batch_size=256)
        outs.append(m.head.weight.clone())
    assert torch.equal(outs[0], outs[1])


def test_param_groups_get_their_learning_rates():
    m = xu.models.dense_net()
    groups = xu.train.param_groups(m, 1e-3, {"head": 10.0, "features.0": 0.0, "features.2": 0.5})
    opt = torch.optim.Adam(groups)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(m.head.weight)] == pytest.approx(1e-2)
    assert lrs[id(m.features[2].weight)] == pytest.approx(5e-4)
    assert lrs[id(m.features[4].weight)] == pytest.approx(1e-3)
    assert id(m.features[0].weight) not in lrs and not m.features[0].weight.requires_grad


def test_learning_rate_reaches_the_update(small):
    """With Adam the first step moves every weight by about its group's lr."""
    train, _ = small
    torch.manual_seed(0)
    m = xu.models.MLP([784, 32], 10)
    w_feat, w_head = m.features[0].weight.clone(), m.head.weight.clone()
    groups = xu.train.param_groups(m, 1e-3, {"head": 10.0})
    xu.train.fit(m, xu.data.Split(train.x[:64], train.y[:64]), epochs=1, batch_size=64, groups=groups)
    step_feat = (m.features[0].weight - w_feat).abs().max().item()
    step_head = (m.head.weight - w_head).abs().max().item()
    assert step_feat == pytest.approx(1e-3, rel=0.01) and step_head == pytest.approx(1e-2, rel=0.01)


def test_frozen_parameters_stay_fixed(small):
    train, _ = small
    m = xu.models.MLP([784, 32, 16], 10)
    m.features.requires_grad_(False)
    frozen = [p.clone() for p in m.features.parameters()]
    head = m.head.weight.clone()
    xu.train.fit(m, train, epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(frozen, m.features.parameters()))
    assert not torch.equal(head, m.head.weight)


def test_penalty_and_on_epoch_are_called(small):
    train, _ = small
    m = xu.models.MLP([784, 16], 10)
    seen = []
    xu.train.fit(m, xu.data.Split(train.x[:256], train.y[:256]), epochs=2, batch_size=128,
                 penalty=lambda mod: 0.0 * mod.head.weight.sum(),
                 on_epoch=lambda e, mod: seen.append(e))
    assert seen == [0, 1]


def test_bad_arguments(small):
    train, _ = small
    m = xu.models.MLP([784, 16], 10)
    with pytest.raises(ParameterError, match="epochs"):
        xu.train.fit(m, train, epochs=0)
    with pytest.raises(ParameterError, match="batch_size"):
        xu.train.fit(m, train, epochs=1, batch_size=-5)
    with pytest.raises(ParameterError, match="lr"):
        xu.train.fit(m, train, epochs=1, lr=-1.0)


def test_predict_and_evaluate_agree(small):
    _, test = small
    m = xu.models.MLP([784, 16], 10)
    pred = xu.train.predict(m, test.x, batch_size=300)
    assert pred.shape == (1000,)
    assert xu.train.evaluate(m, test) == pytest.approx(xu.metrics.accuracy(pred, test.y))


def test_onecycle_schedule():
    f = [xu.train.lr_factor("onecycle", s, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and max(f) == pytest.approx(1.0) and f[9] == pytest.approx(1.0)
    assert f[-1] < 0.02 and all(a >= b for a, b in zip(f[9:], f[10:]))
    assert xu.train.lr_factor("constant", 50, 100) == 1.0
    with pytest.raises(ParameterError, match="schedule"):
        xu.train.fit(xu.models.MLP([784, 4], 2), xu.data.Split(torch.rand(4, 784), torch.zeros(4, dtype=torch.long)),
                     epochs=1, schedule="cosine")


def test_epoch_generator_autocast_and_to_device():
    from xferutils.core.train import autocast, epoch_generator, to_device
    cpu = torch.device("cpu")
    a, b = epoch_generator(3, cpu), epoch_generator(3, cpu)
    assert torch.equal(torch.randperm(20, generator=a), torch.randperm(20, generator=b))  # same seed, same order
    with autocast(cpu, False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(cpu, True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    net = xu.models.MLP([784, 8], 3)
    w = net.head.weight
    assert to_device(net, cpu) is net and net.head.weight is w  # moved in place, same parameters
    with pytest.raises(ParameterError, match="meta"):
        to_device(xu.models.MLP([784, 8], 3).to("meta"), cpu)


def _stopper(k: int = 2, patience: int = 2, together: bool = False) -> xu.train.EarlyStopping:
    return xu.train.EarlyStopping({"w": torch.zeros(k, 3)}, patience, together=together)


def _measure(stop, when, scores):
    """Measurement ``when`` with replica j's weights all equal to ``when`` (to see which are kept)."""
    k = len(scores)
    return stop.update(when, torch.arange(k), torch.tensor(scores), {"w": torch.full((k, 3), float(when))})


def test_early_stopping_each_replica_stops_on_its_own_and_keeps_its_best():
    stop = _stopper()
    assert _measure(stop, 1, [0.5, 0.5]).tolist() == [True, True]
    _measure(stop, 2, [0.6, 0.4])  # replica 1 stale once
    _measure(stop, 3, [0.7, 0.4])  # replica 1 stale twice: out of patience
    assert stop.done.tolist() == [False, True] and not stop.finished
    _measure(stop, 4, [0.6, 0.9])  # a stopped replica does not take a later, better score
    _measure(stop, 5, [0.6, 0.9])
    assert stop.finished and stop.at.tolist() == [3, 1]
    assert stop.best["w"][:, 0].tolist() == [3.0, 1.0]  # the weights of each best measurement


def test_early_stopping_together_waits_for_every_replica_and_lets_a_stale_one_recover():
    stop = _stopper(together=True)
    _measure(stop, 1, [0.5, 0.5])
    _measure(stop, 2, [0.6, 0.4])
    _measure(stop, 3, [0.7, 0.4])  # replica 1 is stale for 2 measurements, replica 0 is not
    assert not stop.done.any()
    _measure(stop, 4, [0.6, 0.8])  # it recovers: its best moves on
    assert stop.at.tolist() == [3, 4] and not stop.done.any()
    _measure(stop, 5, [0.6, 0.7])
    assert not stop.done.any()  # replica 0 is out of patience, replica 1 is not yet
    _measure(stop, 6, [0.6, 0.7])
    assert stop.finished  # both out of patience at once
    assert stop.best["w"][:, 0].tolist() == [3.0, 4.0]


def test_early_stopping_ignores_unmeasured_replicas_and_maps_rows():
    stop = _stopper(k=3, patience=1)
    stop.update(1, torch.tensor([2, 0]), torch.tensor([0.3, float("nan")]), {"w": torch.full((2, 3), 7.0)})
    assert stop.at.tolist() == [0, 0, 1]  # row 0 was not measured (NaN), row 1 not given
    assert stop.best["w"][2].tolist() == [7.0] * 3 and stop.best["w"][0].tolist() == [0.0] * 3


def test_early_stopping_refuses_a_patience_below_one():
    with pytest.raises(ParameterError, match="patience"):
        _stopper(patience=0)
