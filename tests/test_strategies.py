"""Tests of xferutils.chapters.strategies: each strategy trains exactly what it claims (chapter 3)."""
import copy

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import xferutils as xu
from xferutils.chapters import strategies as st
from xferutils.core import metrics
from xferutils.core.config import ParameterError
from toys import changed, net
from xferutils.pages.claims import compare


def train_one(prep: st.Prepared, data, epochs: int = 2) -> torch.nn.Module:
    rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=epochs, lr=1e-2, batch_size=32,
                                   lr_mult=st.merge_multipliers([prep]), penalty=prep.penalty)
    return rep.unstack()[0]


def not_anchor(n: str) -> bool:
    return not n.startswith("anchor.")  # the penalty strengths never train


EXPECTED_TRAINED = {  # which parameters change, by name prefix
    "scratch": not_anchor,
    "feature_extraction": lambda n: n.startswith("head."),
    "full_ft": not_anchor,
    "discriminative": not_anchor,
    "gradual": not_anchor,
    "l2": not_anchor,
    "l2sp": not_anchor,
    "lora": lambda n: n.startswith("head.") or "lora_" in n,
    "adapters": lambda n: n.startswith("head.") or n.split(".")[1] in {"2", "5", "8"},
}


@pytest.mark.parametrize("name", st.STRATEGIES)
def test_each_strategy_trains_exactly_what_it_claims(name, data):
    prep = st.prepare(name, net(), 4, seed=1)
    before = copy.deepcopy(prep.model)
    after = train_one(prep, data, epochs=4 if name == "gradual" else 2)
    claims = EXPECTED_TRAINED[name]
    for n, moved in changed(before, after).items():
        assert moved == claims(n), (name, n, moved)
    # the gradient flows exactly into the parameters marked trainable
    model = prep.model
    model.zero_grad()
    F.cross_entropy(model(data.x), data.y).backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == claims(n), (name, n)
    # the count of trainable parameters agrees
    assert prep.trainable == sum(p.numel() for n, p in model.named_parameters() if claims(n))


def test_new_head_and_scratch_reinitialises():
    src = net()
    prep = st.prepare("full_ft", src, 4)
    assert prep.model.head.out_features == 4
    assert torch.equal(prep.model.features[0].weight, src.features[0].weight)
    scratch = st.prepare("scratch", src, 4, seed=3)
    assert not torch.equal(scratch.model.features[0].weight, src.features[0].weight)
    assert torch.equal(st.prepare("scratch", src, 4, seed=3).model.features[0].weight,
                       scratch.model.features[0].weight)
    assert src.head.out_features == 3  # the source is not modified


def test_discriminative_rates_reach_the_optimizer(data):
    gamma = 0.5
    prep = st.prepare(st.Strategy("discriminative", gamma=gamma), net(), 4)
    mult = prep.multipliers(0)
    assert mult["head.weight"] == 1.0
    assert mult["features.4.weight"] == gamma
    assert mult["features.2.bias"] == gamma ** 2
    assert mult["features.0.weight"] == gamma ** 3
    # with plain SGD-like first Adam step every element moves by lr·mult: check the step sizes
    before = copy.deepcopy(prep.model)
    rep = xu.ensemble.fit_replicas([prep.model], data, [0], epochs=1, lr=1e-3, batch_size=96,
                                   lr_mult=st.merge_multipliers([prep]))
    after = rep.unstack()[0]
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    for name in ("head.bias", "features.4.bias", "features.2.bias", "features.0.bias"):
        step = (a[name] - b[name]).abs().max().item()
        assert step == pytest.approx(1e-3 * mult[name], rel=1e-3), name


def test_gradual_unfreezing_moves_layers_only_after_their_stage(data):
    prep = st.prepare(st.Strategy("gradual", unfreeze_every=1), net(), 4)
    before = copy.deepcopy(prep.model)
    after = train_one(prep, data, epochs=2)  # epochs 0 and 1: head, then features.4
    moved = changed(before, after)
    assert moved["head.weight"] and moved["features.4.weight"]
    assert not moved["features.2.weight"] and not moved["features.0.weight"]


def test_l2sp_penalty_value_and_pull(data):
    params = {"features.0.weight": torch.ones(2, 2), "head.weight": torch.ones(3)}
    init = {"features.0.weight": torch.zeros(2, 2), "head.weight": torch.zeros(3)}
    assert st.l2sp_penalty(0.5)(params, init).item() == pytest.approx(0.5 * 0.5 * 4)
    far = {k: v.clone() for k, v in init.items()}
    far["features.0.weight"] += 2
    assert st.l2sp_penalty(0.5)(far, init).item() > st.l2sp_penalty(0.5)(params, init).item()
    # a strong penalty keeps the pretrained layers closer to their start than plain fine-tuning
    src = net()
    drift = {}
    norm = {}
    for name in ("full_ft", "l2sp", "l2"):
        prep = st.prepare(st.Strategy(name, l2sp=100.0, l2=100.0), src, 4)
        after = train_one(prep, data, epochs=3)
        drift[name] = (after.features[0].weight - src.features[0].weight).norm().item()
        norm[name] = after.features[0].weight.norm().item()
    assert drift["l2sp"] < 0.5 * drift["full_ft"]
    assert norm["l2"] < 0.8 * norm["full_ft"]  # L2 toward zero shrinks the weights instead


def test_weight_penalty_reads_each_replicas_strengths():
    params = {"features.0.weight": torch.full((2, 2), 3.0), "head.weight": torch.ones(3),
              "anchor.sp": torch.tensor(0.5), "anchor.l2": torch.tensor(0.0)}
    init = {k: torch.zeros_like(v) for k, v in params.items()}
    init["features.0.weight"] = torch.ones(2, 2)
    assert st.weight_penalty(params, init).item() == pytest.approx(0.5 * 0.5 * 4 * 4)  # (3-1)^2 * 4
    params["anchor.sp"], params["anchor.l2"] = torch.tensor(0.0), torch.tensor(2.0)
    assert st.weight_penalty(params, init).item() == pytest.approx(0.5 * 2.0 * 4 * 9)
    params["anchor.l2"] = torch.tensor(0.0)
    assert st.weight_penalty(params, init).item() == 0.0
    prep = st.prepare(st.Strategy("l2sp", l2sp=0.3), net(), 4)
    assert prep.model.anchor.sp.item() == pytest.approx(0.3) and prep.model.anchor.l2.item() == 0.0
    assert not prep.model.anchor.sp.requires_grad


@pytest.mark.parametrize("name", ["lora", "adapters"])
def test_lora_and_adapters_start_as_identity_change(name):
    src = net()
    prep = st.prepare(name, src, 3)
    plain = st.prepare("full_ft", src, 3)
    x = torch.rand(5, 784)
    assert torch.allclose(prep.model.features(x), src.features(x), atol=1e-6)
    assert torch.allclose(prep.model.features(x), plain.model.features(x), atol=1e-6)


def test_parameter_counts_are_ordered():
    src = xu.models.MLP([784, 64, 32], 5)
    counts = {n: st.prepare(n, src, 5).trainable for n in st.STRATEGIES}
    assert st.prepare("lora", src, 5).total > st.prepare("full_ft", src, 5).total == xu.models.count_parameters(src)
    head = 32 * 5 + 5
    assert counts["feature_extraction"] == head
    assert counts["full_ft"] == counts["scratch"] == counts["l2"] == xu.models.count_parameters(src)
    assert counts["lora"] == head + 4 * (784 + 64) + 4 * (64 + 32)
    assert counts["adapters"] == head + (64 * 16 + 16 + 16 * 64 + 64) + (32 * 16 + 16 + 16 * 32 + 32)
    assert counts["feature_extraction"] < counts["lora"] < counts["full_ft"]


def test_per_replica_multipliers_match_separate_runs(data):
    """Strategies trained together as replicas give what each gives alone."""
    src = net()
    names = ["feature_extraction", "full_ft", "discriminative"]
    preps = [st.prepare(n, src, 4, seed=2) for n in names]
    together = xu.ensemble.fit_replicas([p.model for p in preps], data, [0, 1, 2], epochs=2, lr=1e-2,
                                        batch_size=32, lr_mult=st.merge_multipliers(preps)).unstack()
    for i, n in enumerate(names):
        p = st.prepare(n, src, 4, seed=2)
        alone = xu.ensemble.fit_replicas([p.model], data, [i], epochs=2, lr=1e-2, batch_size=32,
                                         lr_mult=st.merge_multipliers([p])).unstack()[0]
        for (pn, a), b in zip(alone.named_parameters(), together[i].parameters()):
            assert torch.allclose(a, b, atol=1e-5), (n, pn)


def test_run_jobs_groups_stops_and_reports(data):
    src = net()
    val = xu.data.Split(data.x[:40], data.y[:40])
    names = ("scratch", "lora", "l2sp", "gradual")
    jobs = [st.Job(n, st.Strategy(n), src, data, s, data, val, data) for n in names for s in (0, 1)]
    res = st.run_jobs(jobs, 4, max_epochs=6, patience=2, batch_size=32, min_rows=96)
    assert [r.key for r in res] == [j.key for j in jobs] and [r.seed for r in res] == [0, 1] * 4
    assert all(0.0 <= r.test_acc <= 1.0 and 0.0 <= r.val_acc <= 1.0 for r in res)
    for r in res:
        assert r.val_acc == r.history.val_acc[r.history.best_epoch - 1] == max(r.history.val_acc[:r.history.epochs])\
            or r.key == "gradual"
        assert 1 <= r.epochs <= r.history.epochs
    grad = [r for r in res if r.key == "gradual"]
    assert all(r.history.epochs > 4 and r.epochs > 4 for r in grad)  # the 4-stage schedule ran first
    assert res[0].source_acc is None and res[2].source_acc is not None  # no source task for scratch
    assert res[2].trainable < res[0].trainable == res[0].total
    m = st.Measurements()
    m.add(res)
    assert m.spread("lora").n == 2 and len(m.test["scratch"]) == 2 and "scratch" not in m.source
    assert all(0 <= v <= 100 for v in m.test["l2sp"])


def test_run_jobs_rejects_bad_settings(data):
    job = st.Job("a", st.Strategy("scratch"), net(), data, 0, data, data)
    with pytest.raises(ParameterError, match="jobs"):
        st.run_jobs([], 3)
    with pytest.raises(ParameterError, match="patience"):
        st.run_jobs([job], 4, patience=0)


def test_source_and_target_of_different_sizes():
    """8 source digits → 2 target digits: a new head of another size trains and is measured."""
    src, tgt = st.check_tasks([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    torch.manual_seed(0)
    source = xu.models.MLP([784, 16, 8], len(src))
    gen = torch.Generator().manual_seed(1)
    data = xu.data.Split(torch.rand(40, 784, generator=gen), torch.randint(0, 2, (40,), generator=gen))
    source_task = xu.data.Split(torch.rand(30, 784, generator=gen), torch.randint(0, 8, (30,), generator=gen))
    jobs = [st.Job(k, st.Strategy(k), source, data, 0, data, data, source_task) for k in st.STRATEGIES]
    res = st.run_jobs(jobs, len(tgt), max_epochs=2, patience=1, batch_size=20, min_rows=40)
    assert all(0 <= r.test_acc <= 1 for r in res)
    fe = next(r for r in res if r.key == "feature_extraction")
    before = (source(source_task.x).argmax(1) == source_task.y).float().mean().item()
    assert fe.source_acc == pytest.approx(before)  # frozen features: nothing forgotten


def test_check_tasks_refuses_overlap_and_tiny_tasks():
    assert st.check_tasks("[0, 1]", [2, 3]) == ([0, 1], [2, 3])
    with pytest.raises(ParameterError, match="share \\[4\\]"):
        st.check_tasks([0, 1, 2, 3, 4], [4, 5])
    with pytest.raises(ParameterError, match="at least 2"):
        st.check_tasks([0, 1], [5])


def test_tile_and_epochs_to_fraction():
    d = xu.data.Split(torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 2]))
    t = st.tile(d, 3)
    assert len(t) == 9 and torch.equal(t.y, torch.tensor([0, 1, 2] * 3)) and torch.equal(t.x[3:6], d.x)
    assert st.tile(d, 1) is d
    assert metrics.epochs_to_fraction([0.1, 0.5, 0.85, 0.9, 1.0], 0.9) == 4
    assert metrics.epochs_to_fraction([1.0, 0.5, 1.0]) == 1


def test_tuned_grids_and_validation_choice():
    assert st.tuned("discriminative", 0.385).gamma == 0.385 and st.tuned("lora", 8).rank == 8
    assert st.tuned("scratch", 3) == st.Strategy("scratch")
    assert round(1 / 2.6, 3) in st.GRIDS["discriminative"] and 0.0 in st.GRIDS["l2sp"]
    strats = st.tuning_jobs({"lora": [2, 4]})
    assert set(strats) == {("tune", "scratch", None), ("tune", "feature_extraction", None),
                           ("tune", "gradual", None), ("tune", "lora", 2), ("tune", "lora", 4)}
    m = st.Measurements()
    for v, val in ((2, [50.0, 52.0]), (4, [60.0, 58.0]), (8, [55.0, 57.0])):
        m.val[("tune", "lora", v)] = val
        m.test[("tune", "lora", v)] = [0.0, 0.0]
    assert st.validated(m, "lora", [2, 4, 8]) == 4  # the validation, not the test, decides
    assert st.interior([2, 4, 8], 4) and not st.interior([2, 4, 8], 8) and not st.interior([2, 4, 8], 2)
    st.promote(m, {"lora": 4}, 100)
    assert m.val[("exp1", "lora", 100)] == [60.0, 58.0]


def fake_measurements(sizes=(50, 100), angles=(0, 15, 90), n3=20, seeds=5) -> st.Measurements:
    """Synthetic per-seed accuracies in which full fine-tuning clearly leads everywhere."""
    gen = torch.Generator().manual_seed(0)
    noise = lambda: (torch.randn(seeds, generator=gen) * 0.3).tolist()  # noqa: E731
    m = st.Measurements()
    level = {k: 60.0 + 3 * i for i, k in enumerate(st.STRATEGIES)}
    level["full_ft"] = 95.0
    for n in sizes:
        for k in st.STRATEGIES:
            m.test[("exp1", k, n)] = [level[k] + e for e in noise()]
            m.val[("exp1", k, n)] = [level[k] + e for e in noise()]
            m.source[("exp1", k, n)] = [90.0 - i for i in range(seeds)]
    for v in (0.1, 1.0):
        m.test[("tune", "full_ft", v)] = [70.0 + 10 * v + e for e in noise()]
    for a in angles:
        for k in ("scratch", "feature_extraction", "full_ft"):
            m.test[("exp3", k, a, n3)] = [level[k] + e for e in noise()]
            m.val[("exp3", k, a, n3)] = list(m.test[("exp3", k, a, n3)])
        m.test[("exp3", "dann", a, 0)] = [50.0 + e for e in noise()]
        m.test[("exp3", "source_only", a, 0)] = [50.0 + e for e in noise()]
    return m


def chapter(m, sizes=(50, 100), angles=(0, 15, 90)):
    fam = xu.claims.Family("03_strategies", questions=st.questions(list(sizes), list(angles)))
    cc = st.chapter_claims(m, fam, sizes=list(sizes), angles=list(angles), n3=20,
                           shift_names=["scratch", "feature_extraction", "full_ft"], target="5-9")
    return fam, cc


def test_chapter_claims_known_outcome():
    m = fake_measurements()
    fam, cc = chapter(m)
    v = fam.verdicts()
    assert v["001-exp1-scratch-needs-more-50"].verdict == "supported"
    assert v["004-small-data-freeze"].verdict == "contradicted"    # full FT leads at 50 labels
    assert v["003-fewer-data"].verdict == "supported"              # FT at 50 beats scratch at 100
    assert v["001-negative-transfer"].verdict == "contradicted"    # FE is above scratch here
    assert v["001-large-shift-no-gain"].verdict == "contradicted"  # FT leads by ~30 points at 90°
    assert not any(cid.startswith("001-exp1-perfect") for cid in v)  # document 001's task is chapter 7's
    assert v["001-exp2-smaller-rate"].verdict == "contradicted"    # m = 1 is better here
    assert v["003-dann-invariant-90"].verdict in ("not shown", "equivalent")  # equal by construction
    assert "003-dann-invariant-15" not in v  # the same pair as seed 001's claim at the middle angle: reused
    assert v["001-decision-fe-similar"].verdict == "contradicted"
    ids = [c.id for c in fam.claims]
    assert len(ids) == len(set(ids))
    # each pair of methods is compared once, however often the chart asks for it
    pairs = {frozenset((c.values, c.baseline)) for c in fam.claims if c.kind == "direction"}
    assert len(pairs) == sum(c.kind == "direction" for c in fam.claims)
    # every claim answers a declared question of at most a dozen claims
    assert all(c.question in fam.questions for c in fam.claims)
    assert max(fam.sizes().values()) <= xu.claims.FAMILY_LIMIT
    cells = st.decision(cc, v)
    new = [c for c in cells if c.row.startswith("new")]
    assert [c.leader for c in new] == ["full fine-tuning"] * 2 and all(c.lead_vs_anchor is None for c in new)
    assert all(not c.better and len(c.worse) == len(st.STRATEGIES) - 1 for c in new)
    unl = [c for c in cells if c.col == 0]
    assert all(c.leader == "DANN" and c.anchor == "source model as is" for c in unl)
    assert "DANN is not shown to differ from the source model as is" in st.cell_sentence(unl[0]) or \
        "DANN is equivalent to the source model as is" in st.cell_sentence(unl[0])
    assert "is the reference" in st.cell_sentence(new[0]) and "None shown better" in st.cell_sentence(new[0])


def test_claim_ids_name_the_pair_not_the_outcome():
    """The same ids exist whoever leads on validation (so runs at two presets can be compared)."""
    m = fake_measurements()
    ids = {c.id for c in chapter(m)[0].claims}
    for n in (50, 100):  # another strategy leads on validation now
        m.val[("exp1", "lora", n)] = [99.0] * 5
    assert {c.id for c in chapter(m)[0].claims} == ids


def test_decision_compares_only_strategies_that_ran():
    m = fake_measurements()
    del m.test[("exp1", "lora", 50)], m.val[("exp1", "lora", 50)]
    fam, cc = chapter(m)
    cell = next(c for c in cc.cells if c[1] == 50 and c[0].startswith("new"))
    assert ("exp1", "lora", 50) not in cell[4] and len(cell[4]) == len(st.STRATEGIES) - 2


def test_prose_words_follow_the_verdicts():
    m = fake_measurements()
    kw = dict(sizes=[50, 100], angles=[0, 15, 90], n3=20, shift_names=["scratch", "feature_extraction", "full_ft"])
    fam, cc = chapter(m)
    v = fam.verdicts()
    grids = {"lora": [2, 4, 8], "l2sp": [0.0, 0.01, 0.1]}
    out = st.prose(m, cc, v, st.decision(cc, v), grids=grids, chosen={"lora": 4, "l2sp": 0.0}, **kw)
    assert out["ft_vs_scratch"].data.startswith("with 50 labels, full fine-tuning beats training from scratch (+")
    assert out["exp2_smaller"].data.startswith("m = 0.1 trails m = 1 (")
    assert out["exp2_advice"].data == "fails here"  # the document's advice against its own verdict
    lots = [x for k, x in v.items() if k.startswith("001-decision-ft-lots-")]
    words = out["ft_lots"].data
    beaten = [x for x in lots if x.verdict == "supported"]
    assert words.startswith(f"full fine-tuning is shown to beat {len(beaten)} of the {len(lots)} alternatives at 100")
    for x in beaten:  # every alternative it beats is named, with its evidence
        assert x.text.rsplit("beats ", 1)[-1] + " (" + x.evidence() in words
    worst = min(np.mean(m.test[("exp1", "scratch", n)]) for n in (50, 100))
    assert f"from scratch {worst:.1f} % at its worst size" in out["exp1_verdicts"].data
    assert out["n_edges"] == 1 and "L2-SP" in out["edges"].data
    assert out["n_claims"] == len(v) == (out["n_supported"] + out["n_contradicted"] + out["n_not_shown"]
                                         + out["n_equivalent"])
    assert out["dann_wins"] == 0 and ("undecided" in out["dann_lines"].data or "equivalent" in out["dann_lines"].data)
    # the forgetting ranking is called a finding only when its gap exceeds the seeds' spread
    src = {k: m.source[("exp1", k, 100)] for k in st.STRATEGIES[1:] if ("exp1", k, 100) in m.source}
    lo, nxt = sorted(src, key=lambda k: np.mean(src[k]))[:2]
    gap, sd = np.mean(src[nxt]) - np.mean(src[lo]), max(np.std(src[k], ddof=1) for k in (lo, nxt))
    assert ("is not a finding" in out["forget_note"]) == (gap < sd)
    m.source[("exp1", "full_ft", 100)], m.source[("exp1", "l2sp", 100)] = [70.0, 71.0, 69.0], [90.0, 91.0, 89.0]
    assert "more than the seeds' spread" in st.forget_note(m, {"full_ft": 70.0, "l2sp": 90.0}, 100)
    m.source[("exp1", "l2sp", 100)] = [60.0, 81.0, 69.0]  # the same means apart, a wide spread
    assert "is not a finding" in st.forget_note(m, {"full_ft": 70.0, "l2sp": 70.5}, 100)


def test_claims_words_and_table():
    fam = xu.claims.Family("t", questions=[xu.claims.Question("q", "q", claims=("*",), margin=0.1)])
    fam.direction("a", "book", "x beats y", [2.0, 2.1, 2.2, 2.0, 2.1], [1.0, 1.1, 1.0, 1.2, 1.0])
    fam.direction("b", "book", "y beats x", [1.0, 1.1, 1.0, 1.2, 1.0], [2.0, 2.1, 2.2, 2.0, 2.1])
    fam.direction("c", "book", "x beats z", [1.0, 2.0, 1.0, 2.0, 1.5], [2.0, 1.0, 2.0, 1.0, 1.5])
    v = fam.verdicts()
    assert compare(v["a"], "x", "y").startswith("x beats y (+1.0")
    assert compare(v["b"], "y", "x").startswith("y trails x (−1.0")
    assert compare(v["c"], "x", "z").startswith("x is not shown to differ from z (undecided at 5 seeds")
    table = st.claims_table(fam.evaluate())
    assert table.count("\n") == 4 and "`a`" in table and "| not shown | 5 |" in table


def test_table_builders():
    m = fake_measurements(sizes=(50, 100, 500, 1000, 5000))
    for n in (50, 100, 500, 1000, 5000):
        for k in st.STRATEGIES:
            m.epochs[("exp1", k, n)] = [10.0, 12.0]
    t = st.size_table(m, [50, 100, 500, 1000, 5000])
    lines = t.splitlines()
    assert lines[0].count("|") - 1 <= 7 and len(lines) == 2 + len(st.STRATEGIES)
    assert "| full fine-tuning | 95." in t
    assert "| 11 |" in st.size_table(m, [50, 100], what="epochs", fmt="mean")
    counted = st.size_table(m, [50, 100], n_val=300).splitlines()[0]  # validation labels in the budget
    assert "from scratch (20 + 20)" in st.shift_table(m, [0, 15], 20, ["scratch"], n_val=20)
    assert "50 + 300 labels" in counted and "100 + 300 labels" in counted
    with pytest.raises(ParameterError, match="n_val"):
        st.size_table(m, [50], n_val=-1)
    f = st.forgetting_table(m, [50], xu.metrics.spread([98.0, 99.0]))
    assert "98.5\u00a0±\u00a00.7" in f and "from scratch" not in f
    s = st.shift_table(m, [0, 15, 90], 20, ["scratch", "feature_extraction", "full_ft"])
    assert s.splitlines()[0].count("|") - 1 <= 7 and s.count("°") == 3
    assert "| 0.01 | 0.19 | – |" in st.seed001_exp2_table(m, {0.01: 0.19})  # not measured: a dash
    assert st.seed001_exp2_table(m, {1.0: 0.22}).endswith(f"| 1 | 0.22 | {m.fmt(('tune', 'full_ft', 1.0))} |")
    assert st.seed001_exp3_table(st.SEED001["exp3"]).count("\n") == 6
    assert "50 / " not in st.seed001_exp1_table(m, st.SEED001["exp1"], [50]) and "1.00 / " in \
        st.seed001_exp1_table(m, st.SEED001["exp1"], [50])
    counts = st.counts_table({"lora": (10, 100), "full_ft": (100, 100)})
    assert "| LoRA | 10 | 10.0 % |" in counts
    m.val[("tune", "lora", 2)] = [1.0, 2.0]
    m.test[("tune", "lora", 2)] = [1.0, 2.0]
    m.epochs[("tune", "lora", 2)] = [3.0, 5.0]
    assert "**r = 2**" in st.tuning_table(m, {"lora": [2]}, {"lora": 2})


def test_figures_are_legible(tmp_path):
    import matplotlib.pyplot as plt

    m = fake_measurements()
    figs = [st.size_figure(m, [50, 100], xu.metrics.spread([99.0, 98.0])),
            st.shift_figure(m, [0, 15, 90], 20, ["scratch", "feature_extraction", "full_ft"]),
            st.peft_diagram(), st.digits_figure(torch.rand(12, 784), torch.rand(12, 784), [45, 90])]
    fam, cc = chapter(m)
    figs.append(st.decision_figure(st.decision(cc, fam.verdicts())))
    for fig in figs[:3] + figs[4:]:
        assert fig.get_figwidth() <= 10
        cols = {round(ax.get_position().x0, 2) for ax in fig.axes if ax.get_visible()}
        assert len(cols) <= 2  # at most two panels per row
        texts = [t for ax in fig.axes for t in ax.texts + ax.get_xticklabels()]
        assert all(t.get_fontsize() >= 9 for t in texts if t.get_text())
    texts = " ".join(t.get_text() for ax in figs[2].axes for t in ax.texts)
    assert "frozen" in texts and "B" in texts and "W_up" in texts
    for fig in figs:
        plt.close(fig)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="strategy"):
        st.Strategy("finetune")
    with pytest.raises(ParameterError, match="gamma"):
        st.Strategy("discriminative", gamma=5.0)
    with pytest.raises(ParameterError, match="unfreeze_every"):
        st.Strategy("gradual", unfreeze_every=0)
    with pytest.raises(ParameterError, match="l2="):
        st.Strategy("l2", l2=-1.0)


def test_edge_notes_give_reasons_only_for_natural_ends():
    grids = {"l2sp": [0.0, 0.01, 0.1], "adapters": [8, 64, 128], "lora": [2, 4, 8], "full_ft": [0.1, 1.0, 2.0]}
    notes = st.edge_notes(grids, {"l2sp": 0.0, "adapters": 128, "lora": 8, "full_ft": 1.0})
    assert len(notes) == 3  # full_ft's 1.0 is inside its grid
    assert "genuine answer" in notes[0] and "bottleneck" in notes[1]
    assert "may hide a better value" in notes[2]
    assert st.edge_notes(grids, {"l2sp": 0.01, "adapters": 64, "lora": 4, "full_ft": 1.0}) == []


def test_decision_cells_keep_one_short_line_per_strategy():
    from xferutils.core.metrics import spread
    fam = xu.claims.Family("t", questions=[xu.claims.Question("q", "q", claims=("*",), margin=0.5)])
    fam.direction("win", "b", "g beats ft", [80.0, 81.0, 80.5, 80.2], [70.0, 70.5, 70.1, 70.9], unit="points")
    fam.direction("und", "b", "g beats ft", [80.0, 70.0, 75.0], [75.0, 72.0, 76.0], unit="points")
    v = fam.verdicts()
    cell = st.Cell("new classes", 100, "gradual unfreezing", spread([0.8, 0.9]), "full fine-tuning", v["win"],
                   ["gradual unfreezing"], [], [], ["win"])
    assert st.cell_lines(cell) == ["gradual unfreezing", f"{cell.acc.mean:.1f} %", "beats full fine-tuning"]
    cell = st.Cell("r", 15, "LoRA", spread([0.5, 0.6]), "from scratch", v["und"], [], [], ["LoRA"], ["und"])
    assert st.cell_lines(cell)[-1] == "vs from scratch: undecided"  # never "≈" for an undecided pair
    ref = st.Cell("r", 15, "from scratch", spread([0.5, 0.6]), "from scratch", None, [], [], [], [])
    assert st.cell_lines(ref)[-1] == "(the reference)"


# --- issue 18: forward discriminative rates, counts as run, selection above noise, baselines -----


def test_numpy_discriminative_is_forward():
    settings = xu.chapters.numpy_strategies._strategy_settings(3)
    lr, mult = settings["Discriminative FT"]
    assert mult["W0"] < mult["W1"] < mult["W2"] == 1.0  # input layer slowest, head at the full rate


def test_counts_are_those_of_the_modules_that_ran(data):
    """The tuning and size tables count the parameters of the module that trained (LoRA rank and
    adapter width as run), equal to count_parameters of the prepared module."""
    src = net(4)
    train, val = xu.data.Split(data.x[:48], data.y[:48]), xu.data.Split(data.x[48:], data.y[48:])
    strats = {("tune", "lora", 8): st.tuned("lora", 8), ("tune", "adapters", 12): st.tuned("adapters", 12),
              ("tune", "full_ft", 1.0): st.tuned("full_ft", 1.0)}
    jobs = [st.Job(k, s, src, train, 0, val, val) for k, s in strats.items()]
    m = st.Measurements()
    m.add(st.run_jobs(jobs, 4, max_epochs=1, patience=1, min_rows=48))
    grids = {"lora": [8], "adapters": [12], "full_ft": [1.0]}
    table = st.tuning_table(m, grids, {"lora": 8, "adapters": 12, "full_ft": 1.0})
    for k, s in strats.items():
        p = st.prepare(s, src, 4)
        expected = xu.models.count_parameters(p.model, trainable_only=True)
        assert m.params[k][0] == expected
        assert f"| {expected:,} |" in table
    lora4 = xu.models.count_parameters(st.prepare(st.tuned("lora", 4), src, 4).model, trainable_only=True)
    assert f"| {lora4:,} |" not in table  # the default rank is not what ran
    counts = st.counts_table(st.grid_counts(src, 4, {"lora": [8], "adapters": [12]}))
    assert "LoRA (r = 8)" in counts and f"| {m.params[('tune', 'lora', 8)][0]:,} |" in counts
    st.promote(m, {"lora": 8, "adapters": 12, "full_ft": 1.0}, 48)
    assert f"| {m.params[('tune', 'lora', 8)][0]:,} |" in st.size_table(m, [48])


def test_one_standard_error_rule_prefers_the_simplest():
    m = st.Measurements()
    for v, val in ((0.385, [86.0, 84.0, 85.0]), (0.8, [85.5, 84.5, 85.0]), (1.0, [85.0, 84.0, 84.5])):
        m.val[("tune", "discriminative", v)] = val
    assert st.validated(m, "discriminative", [0.385, 0.8, 1.0]) == 0.385  # best mean (by 0.5)
    assert st.one_se(m, "discriminative", [0.385, 0.8, 1.0]) == 1.0  # within 1 SE of it: γ = 1
    m.val[("tune", "discriminative", 0.385)] = [95.0, 94.0, 96.0]  # far above the noise
    assert st.one_se(m, "discriminative", [0.385, 0.8, 1.0]) == 0.385
    for v, val in ((2, [80.0, 81.0]), (8, [80.5, 81.0]), (16, [90.0, 91.0])):
        m.val[("tune", "lora", v)] = val
    assert st.one_se(m, "lora", [2, 8, 16]) == 16
    m.val[("tune", "lora", 2)] = [90.2, 90.4]
    assert st.one_se(m, "lora", [2, 8, 16]) == 2  # the smaller rank is as good
    assert st.complexity("l2sp", 0.0) == 0 < st.complexity("l2sp", 0.01)
    assert st.complexity("full_ft", 1.0) == 0 < st.complexity("full_ft", 2.0)
    with pytest.raises(ParameterError, match="grid"):
        st.one_se(m, "lora", [])


def test_aa_spread_of_identical_configurations():
    m = st.Measurements()
    for (k, v), val in zip(st.AA, ([84.0, 85.0], [83.0, 82.8], [84.5, 84.5], [85.0, 84.0])):
        m.val[("tune", k, v)] = val
        m.test[("tune", k, v)] = [x - 1 for x in val]
    assert st.aa_spread(m) == pytest.approx(84.5 - 82.9)
    t = st.aa_table(m)
    assert t.count("\n") == 2 + len(st.AA) and "| 1.6 | 1.6 |" in t
    with pytest.raises(ParameterError, match="aa_spread"):
        st.aa_spread(st.Measurements())


def test_baselines_use_the_strategies_images(data):
    pool = xu.data.Split(data.x, data.y % 3)
    m = st.Measurements()
    st.add_baselines(m, lambda b: ("exp1", b, 30), 30, pool, pool, [0, 1], lambda: net(3))
    for b in st.BASELINES:
        assert len(m.test[("exp1", b, 30)]) == 2
    train = xu.data.sample(pool, 30, seed=1)  # jobs_for's sample for seed 1
    assert m.test[("exp1", "pixels", 30)][1] == pytest.approx(100 * xu.baselines.pixel_logistic(train, pool, seed=1))
    assert m.test[("exp1", "prototypes", 30)][1] == pytest.approx(100 * xu.baselines.prototype_accuracy(train, pool))
    rows = st.baselines_list(m)
    assert {r["name"] for r in rows} == {st.NAMES3[b] for b in st.BASELINES}
    assert all(r["setting"] == "new classes, 30 labels" and len(r["measured"]) == 2 for r in rows)
    with pytest.raises(ParameterError, match="baseline"):
        st.add_baselines(m, lambda b: b, 30, pool, pool, [0], lambda: net(3), names=["knn"])


def with_baselines(m, sizes=(50, 100), seeds=5, pixels=90.0):
    gen = torch.Generator().manual_seed(1)
    for n in sizes:
        m.test[("exp1", "pixels", n)] = (pixels + torch.randn(seeds, generator=gen) * 0.3).tolist()
        m.test[("exp1", "random", n)] = (60.0 + torch.randn(seeds, generator=gen) * 0.3).tolist()
        m.test[("exp1", "prototypes", n)] = (80.0 + torch.randn(seeds, generator=gen) * 0.3).tolist()
    m.test[("upper", "scratch", 500)] = (97.0 + torch.randn(seeds, generator=gen) * 0.3).tolist()
    m.test[("upper", "pixels", 500)] = (pixels + torch.randn(seeds, generator=gen) * 0.3).tolist()
    return m


def test_baseline_claims_and_words():
    """One question, ids that name the pair; the words follow the verdicts, and strategies below
    the pixel model are named."""
    m = with_baselines(fake_measurements())  # full FT 95, pixels 90, random 60; others 60-81
    fam, cc = chapter(m)
    v = fam.verdicts()
    ids = {c.id for c in fam.claims if c.question == "ch3-baselines"}
    assert ids == {"ch3-baseline-fullft-vs-pixels-50", "ch3-baseline-fullft-vs-randomnet-50",
                   "ch3-baseline-fullft-vs-pixels-100", "ch3-baseline-fullft-vs-randomnet-100",
                   "ch3-baseline-upper-vs-pixels"}
    assert v["ch3-baseline-fullft-vs-pixels-50"].verdict == "supported"
    assert max(fam.sizes().values()) <= xu.claims.FAMILY_LIMIT
    out = st.baseline_prose(m, cc.comparisons, v, [50, 100])
    assert "full fine-tuning beats logistic regression on pixels (+" in out["baseline_lines"].data
    assert "feature extraction" in out["below_pixels_everywhere"].data
    assert "full fine-tuning" not in out["below_pixels_everywhere"].data
    assert out["upper_vs_pixels"].data.startswith("the upper reference beats the pixel model")
    m2 = with_baselines(fake_measurements(), pixels=99.0)  # now the pixel model wins
    fam2, cc2 = chapter(m2)
    v2 = fam2.verdicts()
    assert v2["ch3-baseline-fullft-vs-pixels-50"].verdict == "contradicted"
    out2 = st.baseline_prose(m2, cc2.comparisons, v2, [50, 100])
    assert "full fine-tuning trails logistic regression on pixels" in out2["baseline_lines"].data
    assert "full fine-tuning" in out2["below_pixels_everywhere"].data
    assert {c.id for c in fam2.claims} == {c.id for c in fam.claims}  # ids never name the outcome
    refs = st.references_list(m, ("upper", "scratch", 500))
    assert refs[0]["target"] == pytest.approx(np.mean(m.test[("upper", "pixels", 500)]))
    assert all({"name", "measured", "target", "source"} <= set(r) for r in refs)


def test_baseline_tables_and_frontier():
    import matplotlib.pyplot as plt

    m = with_baselines(fake_measurements())
    t = st.size_table(m, [50, 100])
    row = next(line for line in t.splitlines() if line.startswith("| logistic regression on pixels |"))
    assert row.split("|")[2].strip() == m.fmt(("exp1", "pixels", 50))
    assert "| random frozen network + linear head | " in t
    assert t.count("\n") == 1 + len(st.STRATEGIES) + len(st.BASELINES)
    assert "pixels" not in st.size_table(m, [50, 100], what="epochs", fmt="mean")
    for a in (0, 15, 90):
        m.test[("exp3", "pixels", a, 20)] = [70.0, 71.0]
    s = st.shift_baseline_table(m, [0, 15, 90], 20)
    assert s.count("°") == 3 and "logistic regression on pixels (20)" in s
    for name in ("l2", "l2sp"):
        for a in (0.0, 0.01, 0.1):
            m.test[("tune", name, a)] = [80.0 + 10 * a, 81.0]
            m.source[("tune", name, a)] = [60.0 + 100 * a, 61.0]
    fig = st.frontier_figure(m, {"l2": [0.0, 0.01, 0.1], "l2sp": [0.0, 0.01, 0.1]})
    assert fig.get_figwidth() <= 10 and len(fig.axes) == 2
    assert len(fig.axes[0].lines) >= 2 and "Li et al." in fig.axes[1].get_title()
    assert all(t.get_fontsize() >= 9 for ax in fig.axes for t in ax.texts + ax.get_yticklabels() if t.get_text())
    plt.close(fig)
    hist = [xu.train.History([1.0, 0.5, 0.4], [0.8, 0.9, 0.88], 2)]
    fig = st.curve_figure(hist, 85.0, "pixels")
    assert fig.axes[0].lines[1].get_xdata()[0] == 2 and fig.axes[0].lines[1].get_ydata()[0] == pytest.approx(90.0)
    plt.close(fig)


def add_uci(m, n3=20, seeds=5, dann_gain=10.0):
    """UCI digits rows: DANN ``dann_gain`` points above the source model, FT well above scratch."""
    gen = torch.Generator().manual_seed(1)
    noise = lambda: (torch.randn(seeds, generator=gen) * 0.3).tolist()  # noqa: E731
    for k, lvl in (("scratch", 70.0), ("feature_extraction", 72.0), ("full_ft", 90.0), ("pixels", 75.0)):
        m.test[("uci", k, n3)] = [lvl + e for e in noise()]
        m.val[("uci", k, n3)] = list(m.test[("uci", k, n3)])
    m.test[("uci", "source_only", 0)] = [80.0 + e for e in noise()]
    m.test[("uci", "dann", 0)] = [80.0 + dann_gain + e for e in noise()]
    return m


def test_uci_and_dann_subset_claims_declared_and_decided():
    angles, sizes = [0, 15, 90], [50, 100]
    m = add_uci(fake_measurements())
    for a in (0, 90):  # DANN ran at the middle angle only
        del m.test[("exp3", "dann", a, 0)]
    fam = xu.claims.Family("03_strategies", questions=st.questions(sizes, angles, dann_angles=[15], uci=True))
    cc = st.chapter_claims(m, fam, sizes=sizes, angles=angles, n3=20,
                           shift_names=["scratch", "feature_extraction", "full_ft"], target="5-9")
    v = fam.verdicts()
    assert v["003-dann-invariant-uci"].verdict == "supported"  # document 003's claim on a real shift
    assert v["ch3-uci-fullft-vs-scratch"].verdict == "supported"
    assert v["ch3-uci-fullft-vs-pixels"].verdict == "supported"
    assert v["ch3-cnn-gain-rot90-vs-rot0"].verdict in ("not shown", "equivalent")  # same levels at 0 and 90
    assert not any(c.startswith("003-dann-invariant-0") or c.startswith("003-dann-invariant-90") for c in v)
    assert fam.questions["ch3-uci"].covers("003-dann-invariant-uci")
    assert all(c.question in fam.questions for c in fam.claims)
    cells = st.decision(cc, v)
    uci0 = [c for c in cells if c.row == "UCI digits" and c.col == 0]
    assert len(uci0) == 1 and uci0[0].lead_vs_anchor.verdict == "supported"
    assert len([c for c in cells if c.col == 0]) == 2  # 15° and UCI digits
    kw = dict(sizes=sizes, angles=angles, n3=20, shift_names=["scratch", "feature_extraction", "full_ft"])
    out = st.prose(m, cc, v, cells, grids={"lora": [2, 4]}, chosen={"lora": 2}, **kw)
    assert out["n_angles"] == 2 and out["dann_wins"] == 1
    assert out["uci_dann_vs_source"].data.startswith("DANN beats the source model as is")
    assert abs(out["uci_dann"] - out["uci_sourceonly"] - 10.0) < 1.0
    assert out["ganin_dann"] == st.GANIN2016["DANN"] and out["ganin_gain"] == st.GANIN2016["DANN"] - 52.25
    import matplotlib.pyplot as plt

    fig = st.shift_figure(m, angles, 20, ["scratch", "feature_extraction", "full_ft"])
    assert len(fig.axes) == 2
    plt.close(fig)


def test_uci_table_baselines_and_references():
    m = add_uci(st.Measurements())
    table = st.uci_table(m, 20, ["scratch", "feature_extraction", "full_ft"], n_val=20)
    assert "20 + 20" in table and "logistic regression on pixels" in table
    assert f"{st.GANIN2016['DANN']:.2f}" in table and f"{st.GANIN2016['train on target']:.2f}" in table
    assert table.count("\n") == 2 + 6  # header, rule, 5 methods measured + the published target row
    base = st.baselines_list(m)
    assert [b["setting"] for b in base] == ["MNIST → UCI digits, 20 labelled UCI images"]
    refs = st.references_list(m, ("upper", "scratch", 3000))
    dann = next(r for r in refs if r["name"].startswith("DANN"))
    assert dann["target"] == 76.66 and dann["measured"] == m.test[("uci", "dann", 0)]
