"""Chapter 6's traversal (:mod:`xferutils.chapters.traversal`): schedules, the vectorised
traversal and its early stopping, λ tuning, and the page builders. The mixture itself is tested
in ``test_mixture.py``."""
import math

import pytest
import torch

from xferutils.chapters import traversal
from xferutils.chapters import traversal as xu_traversal
from xferutils.core import ensemble, models
from xferutils.core.config import ParameterError
from xferutils.core.data import Split
from xferutils.pages import claims as xu_claims
from xferutils.pages.claims import Family


@pytest.mark.parametrize("name", [n for n in traversal.SCHEDULES if n not in ("zero",)])
def test_schedules_are_monotone_and_end_at_one(name):
    qs = traversal.q_schedule(name, 20)
    assert len(qs) == 20 and qs[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-12 for a, b in zip(qs, qs[1:]))
    assert all(0 <= q <= 1 + 1e-12 for q in qs)
    assert traversal.SCHEDULES[name](0.0) == pytest.approx(0.0)


def test_schedules_differ_in_shape():
    mid = {n: traversal.SCHEDULES[n](0.5) for n in ("linear", "cosine", "exponential", "cubic")}
    assert mid["linear"] == 0.5 and mid["cosine"] == pytest.approx(0.5)
    assert mid["cubic"] == pytest.approx(0.875) and mid["exponential"] > 0.85
    assert traversal.SCHEDULES["inverse_sigmoid"](0.25) < 0.25  # slow start


def test_cubic_pruning_schedule():
    assert traversal.prune_fraction(0.9, 0, 10) == 0
    assert traversal.prune_fraction(0.9, 10, 10) == pytest.approx(0.9)
    assert traversal.prune_fraction(0.9, 5, 10) == pytest.approx(0.9 * (1 - 0.5 ** 3))


def test_gmp_reaches_its_final_sparsity_at_the_middle_step():
    assert [traversal.gmp_ramp(n) for n in (1, 2, 5, 10)] == [1, 1, 3, 5]
    with pytest.raises(ParameterError, match="steps"):
        traversal.gmp_ramp(0)


@pytest.mark.parametrize("steps", [0, -1])
def test_steps_below_one_are_refused(steps):
    with pytest.raises(ParameterError, match="steps"):
        traversal.q_schedule("linear", steps)


def test_unknown_schedule_and_retention_are_refused():
    with pytest.raises(ParameterError, match="schedule"):
        traversal.q_schedule("quadratic", 5)
    with pytest.raises(ParameterError, match="retention"):
        traversal.Method("x", retention="ewc-ish")


def test_retention_losses_vanish_when_models_coincide():
    logp = torch.randn(8, 10).log_softmax(-1)
    assert traversal.kl_to(logp.exp(), logp).abs() < 1e-6
    assert traversal.kl_to(torch.full((8, 10), 0.1), logp) > 0
    params = {"w": torch.randn(3, 4)}
    assert traversal.l2_sp(params, {"w": params["w"].clone()}) == 0
    assert traversal.l2_sp(params, {"w": params["w"] + 1}) == pytest.approx(6.0)


def tiny_data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=g)
    return Split(x, (x[:, :10].argmax(1)))


def test_traverse_runs_every_method_and_reports_shapes():
    data = tiny_data()
    seeds = [0, 1]
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, seeds), data, seeds, epochs=1)
    methods = [traversal.Method("none"), traversal.Method("trust", "trust", 1.0)] + traversal.baselines()
    tr = traversal.traverse(dense, methods, data, {"val": data, "test": data}, K=5, kind="kwta", steps=2,
                            batches=1, batch_size=64, n_eval=100)
    assert tr.acc["val"]["mixture"].shape == (6, 2, 2) and tr.final["val"].shape == (6, 2)
    assert tr.images == [64, 128]
    assert torch.allclose(tr.q[0], torch.tensor([0.5, 1.0])) and tr.q[-1].eq(0).all()
    # q = 1 at the last step: the mixture is the sparse net
    assert torch.equal(tr.acc["val"]["mixture"][:2, :, -1], tr.acc["val"]["sparse"][:2, :, -1])
    gmp = tr.net("gmp", 0)  # pruned to 90 % of its weights on the last step
    zero = sum((m.weight == 0).sum().item() for m in models.linear_layers(gmp))
    total = sum(m.weight.numel() for m in models.linear_layers(gmp))
    assert zero / total == pytest.approx(0.9, abs=0.01)
    assert isinstance(tr.net("trust", 1), torch.nn.Module)
    assert traversal.choose(tr, "trust", "linear").name == "trust"
    fam = Family("t", questions=xu_traversal.QUESTIONS)
    traversal.register_claims(fam, tr, [0.9, 0.9])
    ids = [c.id for c in fam.claims]
    assert ids[:4] == ["002-accuracy-sustained", "002-sparse-useful",
                       "002-beats-other-traversals", "002-sparse-from-prefit"] and len(ids) == 8
    assert all(i.startswith("ch6-") for i in ids[4:])
    assert {traversal.claim_id("trust", b) for b in ("none", "abrupt", "distill", "gmp")} <= set(ids)
    from xferutils.pages import ledger

    assert {"002-beats-other-traversals", "002-sparse-from-prefit"} <= {e.id for e in ledger.REGISTRY}
    table = traversal.final_table(tr, [0.9, 0.9])
    assert table.count("\n") == 2 + len(methods) and "sparse net from scratch (reference)" in table
    import matplotlib.pyplot as plt

    fig = traversal.traversal_figure(tr)
    assert len(fig.axes) == 2 and fig.axes[1].get_legend_handles_labels()[1] == [m.name for m in methods]
    # left panel: the traversals only (0 < q < 1 at the first step), in expectation and sampled
    assert fig.axes[0].get_legend_handles_labels()[1] == ["none", "trust"] and len(fig.axes[0].lines) == 4
    plt.close(fig)


def test_traverse_with_zero_rates_keeps_the_dense_net():
    data = tiny_data()
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [3]), data, [3], epochs=1)
    tr = traversal.traverse(dense, [traversal.Method("keep", schedule="zero")], data, {"val": data},
                            steps=1, batches=2, batch_size=64, lr=0.0, n_eval=512)
    assert tr.final["val"][0, 0].item() == pytest.approx(dense.evaluate(data)[0], abs=1e-6)


def test_bad_traversal_parameters_are_refused():
    data = tiny_data(64)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0]), data, [0], epochs=1)
    with pytest.raises(ParameterError, match="K="):
        traversal.traverse(dense, [traversal.Method("a")], data, {}, K=1)
    with pytest.raises(ParameterError, match="steps"):
        traversal.traverse(dense, [traversal.Method("a")], data, {}, steps=0)
    with pytest.raises(ParameterError, match="methods"):
        traversal.traverse(dense, [], data, {}, batch_size=32)


def test_builders_return_markdown_and_figures():
    import matplotlib.pyplot as plt

    fig = traversal.mixture_diagram()
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 5
    plt.close(fig)


def test_check_parameters_accepts_the_chapter_defaults_and_names_a_bad_one():
    good = dict(seed0=0, n_seeds=0, K=21, kind="kwta", schedule="linear", steps=5, batches=4,
                retention="trust", prune=0.9, lr=1e-3, patience=4)
    traversal.check_parameters(**good)
    for name, bad in [("seed0", -1), ("n_seeds", 101), ("K", 1), ("kind", "relu"), ("schedule", "abrupt"),
                      ("steps", 0), ("batches", 0), ("retention", "ewc"), ("prune", 1.0), ("lr", 0.0),
                      ("patience", 0)]:
        with pytest.raises(ParameterError, match=name):
            traversal.check_parameters(**{**good, name: bad})


def test_candidates_span_every_grid_and_are_chosen_per_grid():
    grid = {"trust": (1.0, 10.0), "anchor": (1e-3, 1e-2), "distill": (0.1, 1.0)}
    cands = traversal.candidates("cosine", grid)
    assert [m.name for m in cands] == ["none", "trust 1", "trust 10", "anchor 0.001", "anchor 0.01",
                                      "distill 0.1", "distill 1"]
    assert all(m.schedule == "cosine" for m in cands[:5]) and cands[-1].schedule == "abrupt"
    assert cands[-1].retention == "dense" and cands[1].lam == 1.0
    assert len(traversal.candidates("linear")) == 1 + sum(len(v) for v in traversal.GRID.values())
    with pytest.raises(ParameterError, match="schedule"):
        traversal.candidates("quadratic")
    with pytest.raises(ParameterError, match="grid"):
        traversal.candidates("linear", {"ewc": (1.0,)})
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0]), data, [0], epochs=1)
    tuning = traversal.traverse(dense, cands, data, {"val": data}, K=5, kind="kwta", steps=2, batches=1,
                                batch_size=64, curves=False)
    assert tuning.acc == {} and tuning.final["val"].shape == (len(cands), 1)
    chosen = traversal.choose_all(tuning, "cosine", grid)
    assert set(chosen) == set(grid) and chosen["distill"].schedule == "abrupt"
    assert chosen["trust"].lam in grid["trust"]
    methods = traversal.main_methods("cosine", chosen, prune=0.5)
    assert [m.name for m in methods] == ["none", "trust", "anchor", "abrupt", "distill", "scratch", "gmp"]
    assert methods[4].lam == chosen["distill"].lam and methods[-1].prune == 0.5
    table = traversal.tuning_table(tuning, chosen, grid)
    assert table.count("\n") == 2 + len(grid) and "**" in table
    note = traversal.edge_note(tuning, chosen, grid)
    assert note.startswith("At an end of its grid") and "anchor chose" in note  # a grid of one value
    assert traversal.edge_note(tuning, chosen, {"trust": (0.1, chosen["trust"].lam, 100.0)}).startswith("Every")


def test_method_order_does_not_change_the_results():
    """Methods are regrouped internally (networks that never train are skipped); each method's
    numbers do not depend on where it stands in the list."""
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    ms = [traversal.Method("gmp", schedule="zero", prune=0.5), traversal.Method("trust", "trust", 3.0),
          traversal.Method("abrupt", schedule="abrupt"), traversal.Method("anchor", "anchor", 1e-2)]
    kw = dict(K=5, kind="kwta", steps=2, batches=2, batch_size=32, n_eval=64)
    a = traversal.traverse(dense, ms, data, {"val": data}, **kw)
    b = traversal.traverse(dense, ms[::-1], data, {"val": data}, **kw)
    assert [m.name for m in a.methods] == [m.name for m in ms]
    for m in ms:
        i, j = a.index(m.name), b.index(m.name)
        assert torch.allclose(a.final["val"][i], b.final["val"][j])
        assert torch.allclose(a.acc["val"]["mixture"][i], b.acc["val"]["mixture"][j])
        assert torch.allclose(a.q[i], b.q[j])
    # the abrupt switch never trains its dense net: it is still the dense start
    assert torch.equal(a.params["d.features.0.weight"][a.index("abrupt") * 2], dense.params["features.0.weight"][0])


def test_verdict_words_and_summary_values_follow_the_claims():
    data = tiny_data()
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    methods = [traversal.Method("none"), traversal.Method("trust", "trust", 1.0)] + traversal.baselines()
    tr = traversal.traverse(dense, methods, data, {"test": data}, K=5, kind="kwta", steps=2,
                            batches=1, batch_size=64, n_eval=100)
    for main in ("trust", "none"):
        fam = Family("t", questions=xu_traversal.QUESTIONS)
        traversal.register_claims(fam, tr, [0.9, 0.9], main=main)
        verdicts = fam.verdicts()
        words = traversal.verdict_words(verdicts, main=main)
        assert {f"says_{i}" for i in verdicts} <= set(words)
        none = "the same traversal without retention"
        assert words["vs_none"] == (f"is {none}" if main == "none" else
                                    xu_claims.compare(verdicts["002-beats-other-traversals"], "", none).strip())
        assert words["start"].split(" (")[0] in ("beats it", "trails it", "is equivalent to it",
                                                 "is not shown to differ from it")
        table = traversal.verdict_table(verdicts)
        assert table.count("\n") == 1 + len(verdicts)
        values = traversal.summary_values(tr, [0.9, 0.9], main=main)
        assert values["main"] == main and values["drop"] == pytest.approx(90 - values["main_acc"], abs=1e-3)
        assert {"scratch_acc", "gmp_acc", "abrupt_acc", "none_acc", "worst"} <= set(values)
        assert values["drop_words"].startswith("loses" if values["drop"] >= 0 else "gains")
        above = traversal.summary_values(tr, [0.0, 0.0], main=main)  # a dense net at 0 %: a gain
        assert above["drop_words"] == f"gains {-above['drop']:.2f} points"


def test_early_stopping_keeps_the_best_step_and_stops_after_patience():
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    ms = [traversal.Method("trust", "trust", 1.0), traversal.Method("gmp", schedule="zero", prune=0.5)]
    kw = dict(K=5, kind="kwta", steps=2, batches=1, batch_size=32, n_eval=256)  # all of data
    # nothing learns at lr = 0: the first measurement stays best and the run ends `patience` later
    still = traversal.traverse(dense, ms, data, {"val": data}, lr=0.0, tail=10, patience=2, **kw)
    assert still.q.shape == (2, 4) and still.best_step.eq(2).all() and len(still.images) == 4
    assert still.acc["val"]["sparse"].shape == (2, 2, 4)
    for each in (False, True):
        _check_early_stopping(traversal.traverse(dense, ms, data, {"val": data, "test": data}, lr=3e-3,
                                                 tail=6, patience=2, each=each, **kw), each)
    with pytest.raises(ParameterError, match="stop"):
        traversal.traverse(dense, ms, data, {"test": data}, tail=2, **kw)
    with pytest.raises(ParameterError, match="patience"):
        traversal.traverse(dense, ms, data, {"val": data}, tail=2, patience=0, **kw)


def _check_early_stopping(tr, each: bool) -> None:
    run = tr.q.shape[1]
    assert 2 < run <= 8 and tr.best_step.min() >= 2 and tr.best_step.max() <= run
    # the kept weights are those of the best step: their full-split accuracy is the curve's best value
    curve = traversal.target_curve(tr, "val")
    for m in range(2):
        for k in range(2):
            step = int(tr.best_step[m, k]) - 1
            assert curve[m, k, step] == pytest.approx(curve[m, k, 2 - 1:].nan_to_num(-1).max().item())
            assert tr.final["val"][m, k].item() == pytest.approx(curve[m, k, step].item(), abs=1e-6)
            measured = int((~torch.isnan(curve[m, k])).sum())
            if each:  # each network stops `patience` steps after its best one (or at the cap)
                assert measured == min(step + 1 + 2, 8)
            else:  # every network trains and is measured until all are stale
                assert measured == run and (tr.best_step.max() + 2 == run or run == 8)
            assert not torch.isnan(curve[m, k, :measured]).any()
    assert tr.ends_sparse().tolist() == [True, False]
    # in the tail only the stopping split's final networks are measured
    assert torch.isnan(tr.acc["test"]["sparse"][:, :, 2:]).all() and not torch.isnan(tr.acc["test"]["sparse"][0, :, :2]).any()
    assert torch.isnan(tr.acc["val"]["dense"][0, :, 2:]).all() and not torch.isnan(tr.acc["val"]["sparse"][0, :, :3]).any()


def test_sampled_mixture_is_the_routed_network_and_follows_q():
    data = tiny_data(512)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0]), data, [0], epochs=1)
    ms = [traversal.Method("none"), traversal.Method("gmp", schedule="zero", prune=0.5)]
    tr = traversal.traverse(dense, ms, data, {"test": data}, K=5, kind="kwta", steps=4, batches=1,
                            batch_size=32, n_eval=512)
    acc = tr.acc["test"]
    # q = 0 throughout: the sampled mixture is the dense net; q = 1 at the end: the sparse one
    assert torch.equal(acc["sampled"][1], acc["dense"][1])
    assert torch.equal(acc["sampled"][0, :, -1], acc["sparse"][0, :, -1])
    # in between, the sampled accuracy lies within the two networks' (up to routing noise)
    q = float(tr.q[0, 1])
    mid = (1 - q) * acc["dense"][0, 0, 1] + q * acc["sparse"][0, 0, 1]
    assert abs(acc["sampled"][0, 0, 1] - mid) < 4 * math.sqrt(0.25 / 512) + 0.05
    low = traversal.worst_along_path(tr, part="sampled")
    assert low.shape == (2, 1) and torch.equal(low[1], acc["dense"][1].min(-1).values)
    with pytest.raises(ParameterError, match="part"):
        traversal.worst_along_path(tr, part="median")


def test_matched_prune_equals_the_sparse_nets_multiply_adds():
    from xferutils.core import sparse

    net = sparse.sparse_net(21, "kwta")
    macs = sparse.multiply_adds(net, torch.rand(16, 784))
    frac = traversal.matched_prune(macs)
    dense = 784 * 512 + 512 * 256 + 256 * 128 + 128 * 10
    assert (1 - frac) * dense == pytest.approx(784 * 512 + 20 * (256 + 128 + 10))
    assert traversal.matched_prune({"dense": 100.0, "sparse": 25.0}) == pytest.approx(0.75)
    with pytest.raises(ParameterError, match="sparse"):
        traversal.matched_prune({"dense": 100.0, "sparse": 200.0})
    ms = traversal.run_methods("linear", 0.9, frac, {"trust": (1.0, 3.0), "distill": (0.1,)})
    assert [m.name for m in ms] == ["none", "trust 1", "trust 3", "distill 0.1", "abrupt", "scratch",
                                    "gmp", "gmp-macs"]
    assert ms[-1].prune == pytest.approx(frac) and ms[-2].prune == 0.9


class _Tuned:
    def __init__(self, names, vals):
        self.methods = [traversal.Method(n, n.split()[0] if n.split()[0] in traversal.RETENTION else "none",
                                         float(n.split()[1]) if " " in n else 0.0) for n in names]
        self.final = {"val": torch.tensor([[v] for v in vals])}


def test_grid_is_extended_beyond_a_choice_at_its_end_only():
    grid = {"trust": (1.0, 3.0, 10.0), "anchor": (1e-5, 1e-4, 1e-3), "dense": (0.3, 1.0, 3.0)}
    chosen = {"trust": traversal.Method("trust 10", "trust", 10.0),
              "anchor": traversal.Method("anchor 1e-05", "anchor", 1e-5),
              "dense": traversal.Method("dense 1", "dense", 1.0)}
    tuned = _Tuned(["trust 1", "trust 10", "anchor 1e-05"], [0.5, 0.6, 0.7])
    ext = traversal.extend_grid(tuned, chosen, grid)
    # above the largest only (3 digits); the smallest choice (anchor) needs none: λ → 0 is "none"
    assert ext == {"trust": (pytest.approx(10 * 10 / 3, rel=1e-2),)}
    assert traversal.merged_grid(grid, ext)["trust"][-1] == pytest.approx(33.3)
    # once the extension ran, it is not proposed again
    tuned2 = _Tuned(["trust 33.3"], [0.5])
    assert traversal.extend_grid(tuned2, chosen, grid) == {}


def test_main_view_renames_the_chosen_lambda_and_join_pads_curves():
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    kw = dict(K=5, kind="kwta", batches=1, batch_size=32, n_eval=64)
    a = traversal.traverse(dense, traversal.run_methods("linear", 0.5, 0.2, {"trust": (1.0, 3.0), "distill": (0.1,)}),
                           data, {"val": data, "test": data}, steps=2, **kw)
    b = traversal.traverse(dense, [traversal.Method("trust 9", "trust", 9.0)], data, {"val": data, "test": data},
                           steps=3, **kw)
    both = traversal.join(a, b)
    assert both.q.shape == (len(a.methods) + 1, 3) and torch.isnan(both.q[0, 2])
    assert torch.isnan(both.acc["test"]["mixture"][0, :, 2]).all()
    assert not torch.isnan(both.acc["test"]["mixture"][-1]).any()
    chosen = {"trust": both.methods[both.index("trust 9")], "distill": both.methods[both.index("distill 0.1")]}
    view = traversal.main_view(both, chosen)
    assert [m.name for m in view.methods] == ["none", "trust", "abrupt", "distill", "scratch", "gmp", "gmp-macs"]
    assert view.methods[1].lam == 9.0 and torch.equal(view.final["test"][1], b.final["test"][0])
    assert torch.equal(view.params["s.features.0.weight"][2], b.params["s.features.0.weight"][0])
    assert traversal.worst_along_path(view).isfinite().all()
    with pytest.raises(ParameterError, match="seeds"):
        traversal.join(a, traversal.traverse(dense.select([0]), [traversal.Method("none")], data,
                                             {"val": data, "test": data}, steps=2, **kw))


def test_baselines_references_and_k_sweep_tables():
    data = tiny_data(512)
    base = traversal.baseline_values(data, data)
    assert set(base) == {"pixels", "prototypes"} and all(0 <= v <= 100 for v in base.values())
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    ms = traversal.main_methods("linear", {"trust": traversal.Method("trust 1", "trust", 1.0)}, prune=0.5)
    ms.append(traversal.Method("gmp-macs", schedule="zero", prune=0.2))
    tr = traversal.traverse(dense, ms, data, {"test": data}, K=5, kind="kwta", steps=2, batches=1,
                            batch_size=64, n_eval=100)
    dense_test = [0.9, 0.8]
    table = traversal.method_table(tr, dense_test, base)
    assert table.count("\n") == 2 + len(ms) + len(base) and "| baseline: logistic regression on pixels |" in table
    refs = traversal.references_list(tr, dense_test)
    assert refs[0]["target"] == traversal.PUBLISHED["dense_target"] and refs[0]["measured"] == pytest.approx([90, 80])
    assert [r["target"] for r in refs[1:]] == pytest.approx([85 - traversal.PUBLISHED["gmp_margin"]] * 2)
    assert "50 %" in refs[1]["name"] and "20 %" in refs[2]["name"]
    bl = traversal.baselines_list(base, 512, 2)
    assert [len(b["measured"]) for b in bl] == [2, 2] and bl[0]["setting"].startswith("all 512")
    kw = dict(batches=1, batch_size=64, n_eval=100)
    main = traversal.traverse(dense, [traversal.Method("none"), traversal.Method("trust", "trust", 1.0)], data,
                              {"val": data, "test": data}, K=5, kind="kwta", steps=2, tail=3, patience=1, **kw)
    runs = traversal.k_sweep(dense.select([0]), main, "trust", [3, 5, 6], data, {"val": data, "test": data},
                             patience=1, **kw)
    assert set(runs) == {3, 5, 6} and all(r.K == k for k, r in runs.items())
    # the main K is the main run's own networks; the others train as many steps as the main run
    assert torch.equal(runs[5].final["test"], main.final["test"][1:, :1])
    assert all(len(r.images) == len(main.images) for r in runs.values())
    kt = traversal.k_table(runs, data.x[:64])
    assert kt.count("\n") == 4 and "| 6 | 5 |" in kt
    with pytest.raises(ParameterError, match="Ks"):
        traversal.k_sweep(dense, main, "trust", [], data, {"val": data})
    with pytest.raises(ParameterError, match="K="):
        traversal.k_sweep(dense.select([0]), main, "trust", [1], data, {"val": data})
    with pytest.raises(ParameterError, match="seeds"):
        traversal.k_sweep(dense.select([1]), main, "trust", [3], data, {"val": data})


def test_run_all_stops_scratch_separately_and_tune_extends_an_edge():
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    kw = dict(K=5, kind="kwta", steps=2, batches=1, batch_size=32, n_eval=128, tail=3, patience=1)
    grid = {"trust": (1.0, 3.0)}
    ms = traversal.run_methods("linear", 0.5, None, grid)
    assert [m.name for m in ms] == ["none", "trust 1", "trust 3", "abrupt", "scratch", "gmp"]
    tr = traversal.run_all(dense, ms, data, {"val": data}, **kw)
    assert [m.name for m in tr.methods] == ["none", "trust 1", "trust 3", "abrupt", "gmp", "scratch"]
    assert tr.final["val"].shape == (6, 2)
    # one more λ runs above the grid only when the choice is its largest
    first = traversal.choose_all(tr, "linear", grid)["trust"].lam
    tuned, chosen, grown = traversal.tune(dense, tr, "linear", data, {"val": data}, grid, rounds=1, **kw)
    if first == 3.0:
        assert grown["trust"] == (1.0, 3.0, 9.0) and len(tuned.methods) == 7
    else:
        assert grown == grid and len(tuned.methods) == 6
    assert chosen["trust"].lam in grown["trust"]
    assert traversal.tune(dense, tr, "linear", data, {"val": data}, grid, rounds=0, **kw)[2] == grid
    with pytest.raises(ParameterError, match="methods"):
        traversal.run_all(dense, [], data, {"val": data}, **kw)


def test_grid_for_tunes_the_main_retention_and_distillation():
    assert list(traversal.grid_for("trust")) == ["trust", "distill"]
    assert list(traversal.grid_for("none")) == ["distill"]
    assert traversal.grid_for("anchor", every=True) == traversal.GRID
    with pytest.raises(ParameterError, match="main"):
        traversal.grid_for("ewc")


def test_reference_words_follow_the_numbers():
    tr = traversal.Traversal([traversal.Method("trust", "trust", 1.0), traversal.Method("gmp", schedule="zero", prune=0.9)],
                             [0, 1], torch.tensor([[0.5, 1.0], [0.0, 0.0]]), [10, 20], {},
                             {"test": torch.tensor([[0.97, 0.97], [0.90, 0.92]])}, {}, 21, "kwta")
    w = traversal.reference_words(tr, [0.98, 0.98], {"pixels": 92.5, "prototypes": 82.0})
    assert w["dense_words"].startswith("which it reaches")
    assert w["gmp_words"].startswith("7.00 points below") and "short of" in w["gmp_words"]
    assert w["base_words"] == "below logistic regression on pixels: gradual magnitude pruning"
    w = traversal.reference_words(tr, [0.90, 0.90], {"pixels": 50.0, "prototypes": 40.0})
    assert w["dense_words"] == "which it misses by 7.50 points" and "published level" in w["gmp_words"]
    assert w["gmp_words"].startswith("within 0.5 point") and w["base_words"].startswith("every method")


def test_vectorised_prune_equals_the_replica_loop():
    """_prune (replicas with the same count done together) gives the same masks and weights as
    the replica-by-replica loop, for random weights, mixed fractions and unpruned replicas."""
    g = torch.Generator().manual_seed(3)
    shapes = {"d.a.weight": (7, 30, 20), "d.b.weight": (7, 10, 30)}
    params = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    prune = torch.tensor([0.0, 0.9, 0.9, 0.5, 0.0, 0.5, 0.3])
    a = {k: v.clone() for k, v in params.items()}
    b = {k: v.clone() for k, v in params.items()}
    ma = {k: torch.ones_like(v) for k, v in params.items()}
    mb = {k: torch.ones_like(v) for k, v in params.items()}
    for step in (1, 2, 3, 3):
        traversal._prune(ma, a, prune, step, 3)
        traversal._prune_loop(mb, b, prune, step, 3)
        for k in params:
            assert torch.equal(ma[k], mb[k]) and torch.equal(a[k], b[k])
    # at the end the pruned replicas hold the final fraction of zeros; the others none
    zeros = (a["d.a.weight"] == 0).flatten(1).float().mean(1)
    assert zeros.tolist() == pytest.approx([0.0, 0.9, 0.9, 0.5, 0.0, 0.5, 0.3], abs=2 / 600)


def test_kept_curve_and_stopping_words_follow_each_networks_stop():
    data = tiny_data(256)
    dense = ensemble.fit_replicas(ensemble.replicate(models.dense_net, [0, 1]), data, [0, 1], epochs=1)
    ms = [traversal.Method("trust", "trust", 1.0), traversal.Method("gmp", schedule="zero", prune=0.5)]
    kw = dict(K=5, kind="kwta", steps=2, batches=1, batch_size=32, n_eval=256)
    tr = traversal.traverse(dense, ms, data, {"val": data}, lr=3e-3, tail=6, patience=2, each=True, **kw)
    raw, kept = traversal.target_curve(tr, "val"), traversal.kept_curve(tr, "val")
    seen = ~torch.isnan(raw)
    assert torch.equal(kept[seen], raw[seen]) and not torch.isnan(kept).any()
    for m in range(2):
        for k in range(2):
            best = int(tr.best_step[m, k]) - 1
            last = int(seen[m, k].nonzero().max())
            assert (kept[m, k, last + 1:] == raw[m, k, best]).all()
    flags = traversal.stopping(tr, 2, 8)
    assert flags == {m.name: [int(b) + 2 > 8 for b in tr.best_step[i]] for i, m in enumerate(tr.methods)}
    words = traversal.stopping_words(tr, 2, 8)
    assert words.startswith("every network") == (not any(any(v) for v in flags.values()))
    # a cap no network could reach before its best step: every one is flagged
    assert traversal.stopping_words(tr, 2, 1).count("of 2 seeds") == 2


def test_survival_table_reports_dead_softmax_layers():
    net = models.dense_net()
    x, y = torch.rand(20, 784), torch.randint(0, 10, (20,))
    table = traversal.survival_table(net.state_dict(), x, y, [10], kinds=["softmax", "kwta"])
    softmax_row, kwta_row = table.splitlines()[2:]
    assert "0.00 / 0.00 / 0.00" in softmax_row and softmax_row.endswith("| 0 |")  # nothing survives
    assert not kwta_row.endswith("| 0 |")


def test_choose_prefers_the_smaller_lambda_within_one_standard_error():
    tuned = _Tuned(["trust 0.3", "trust 1", "trust 3"], [0.0, 0.0, 0.0])
    # seeds of λ = 1 spread by 0.02 (standard error 0.01): λ = 0.3 sits within it, λ = 3 below
    tuned.final = {"val": torch.tensor([[0.955, 0.957, 0.956, 0.958],
                                        [0.94, 0.96, 0.96, 0.98],
                                        [0.90, 0.91, 0.90, 0.91]])}
    assert traversal.choose(tuned, "trust", "linear").lam == 0.3
    # a gain above the noise moves λ off the smallest value
    tuned.final["val"][0] -= 0.03
    assert traversal.choose(tuned, "trust", "linear").lam == 1.0
