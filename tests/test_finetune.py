"""Tests of xferutils.core.finetune (chapters 2, 3 and 5): layer names, discriminative rates,
gradual unfreezing, frozen bottoms."""
import copy

import pytest

import xferutils as xu
from xferutils.chapters import strategies as st
from xferutils.core import finetune
from xferutils.core.config import ParameterError
from toys import changed, net


def test_gradual_unfreezing_follows_its_schedule():
    prep = st.prepare(st.Strategy("gradual", unfreeze_every=2), net(), 4)
    layers = finetune.layer_names(prep.model)
    assert layers == ["features.0", "features.2", "features.4", "head"]
    for epoch, k in [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (6, 4), (50, 4)]:
        assert finetune.unfrozen_layers(epoch, 4, 2) == k
        mult = prep.multipliers(epoch)
        trained = [layer for layer in layers if mult[f"{layer}.weight"] > 0]
        assert trained == layers[4 - k:], (epoch, trained)


def test_schedule_epochs_and_frozen_bottom():
    model = st.prepare(st.Strategy("gradual", unfreeze_every=3), net(), 4).model
    assert st.schedule_epochs(st.Strategy("gradual", unfreeze_every=3), model) == 12
    assert st.schedule_epochs(st.Strategy("full_ft"), model) == 0
    mult = finetune.frozen_bottom_multipliers(model, 2)  # the exercise's reference solution
    assert [mult[f"{layer}.weight"] for layer in finetune.layer_names(model)] == [0.0, 0.0, 1.0, 1.0]
    assert mult["features.0.bias"] == 0.0 and mult["head.bias"] == 1.0
    assert set(finetune.frozen_bottom_multipliers(model, 0).values()) == {1.0}
    with pytest.raises(ParameterError, match="k="):
        finetune.frozen_bottom_multipliers(model, 5)


def test_frozen_bottom_multipliers_freeze_in_training(data):
    prep = st.prepare("full_ft", net(), 4)
    before = copy.deepcopy(prep.model)
    rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=2, lr=1e-2, batch_size=32,
                                   lr_mult=finetune.frozen_bottom_multipliers(prep.model, 1))
    moved = changed(before, rep.unstack()[0])
    assert not moved["features.0.weight"] and moved["features.2.weight"] and moved["head.weight"]


def test_discriminative_is_forward_everywhere():
    """Lower layers get smaller rates: γ ≤ 1 in the grid and in the definition; γ > 1 is refused."""
    assert all(0 < g <= 1 for g in st.GRIDS["discriminative"] + st.SMOKE_GRIDS["discriminative"])
    assert round(1 / 2.6, 3) in st.GRIDS["discriminative"] and 1.0 in st.GRIDS["discriminative"]
    mult = finetune.discriminative_multipliers(net(), 1 / 2.6)
    rates = [mult[f"{name}.weight"] for name in finetune.layer_names(net())]  # input to head
    assert rates == sorted(rates) and rates[0] < rates[-1] == 1.0
    for bad in (1.25, 1.6):
        with pytest.raises(ParameterError, match="gamma"):
            st.Strategy("discriminative", gamma=bad)
        with pytest.raises(ParameterError, match="gamma"):
            finetune.discriminative_multipliers(net(), bad)
    assert "no longer discriminative" in st.edge_notes({"discriminative": [0.5, 1.0]}, {"discriminative": 1.0})[0]


def test_gradual_multipliers_unfreeze_from_the_top():
    """Epoch 0 trains the head only; every ``every`` epochs one more layer below it joins."""
    model = net()
    names = finetune.layer_names(model)
    at = finetune.gradual_multipliers(model, every=2)
    trained = [[at(e)[f"{n}.weight"] for n in names] for e in range(7)]
    assert trained[0] == [0.0, 0.0, 0.0, 1.0] and trained[1] == trained[0]
    assert trained[2] == [0.0, 0.0, 1.0, 1.0]
    assert trained[6] == [1.0, 1.0, 1.0, 1.0]
    assert all(at(e)[f"{n}.bias"] == at(e)[f"{n}.weight"] for e in range(7) for n in names)
