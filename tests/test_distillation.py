"""Tests of xferutils.chapters.what_works.distillation (chapter 5): the loss at temperature T, rows, bias shift, merged teachers."""
import copy
import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch.nn import functional as F

from xferutils.chapters.what_works import distillation as distill

from xferutils.core import models
from xferutils.core.config import ParameterError
from xferutils.core.data import Split


def test_distill_loss_equals_closed_form():
    # student logits [2, 0] at T = 2 -> log-softmax [1 - log(1 + e), -log(1 + e)]; targets [.75, .25]
    s = torch.tensor([[2.0, 0.0]])
    q = torch.tensor([[0.75, 0.25]])
    expected = 4 * (math.log(1 + math.e) - 0.75)
    assert distill.distill_loss(s, q, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_targets_of_known_logits():
    q = distill.soft_targets(torch.tensor([[math.log(3.0), 0.0]]), 1.0)
    assert torch.allclose(q, torch.tensor([[0.75, 0.25]]))
    flat = distill.soft_targets(torch.tensor([[5.0, 0.0, -5.0]]), 1e4)
    assert torch.allclose(flat, torch.full((1, 3), 1 / 3), atol=1e-3)


def test_hard_rows_give_ordinary_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    rows = distill.hard_rows(torch.zeros(6, 2), y, 4)
    loss = distill.objective(lambda x: logits, rows.x, rows.y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_soft_rows_carry_their_temperature():
    rows = distill.soft_rows(torch.zeros(3, 2), torch.randn(3, 5), 4.0)
    assert rows.y.shape == (3, 6) and torch.all(rows.y[:, -1] == 4.0)
    assert torch.allclose(rows.y[:, :-1].sum(-1), torch.ones(3))


def test_bias_shift_and_its_choice_on_validation():
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.5], [1.0, -3.0]])
    y = torch.tensor([1, 1, 0])
    assert torch.equal(distill.shift_bias(logits, 1, 2.0)[:, 1], torch.tensor([2.0, 2.5, -1.0]))
    b, acc = distill.column_bias(logits, y, 1, [0.0, 1.0, 2.0, 3.0, 5.0])
    assert b == 2.0 and acc == 1.0  # all three right needs 1 < b < 4 (a tie goes to class 0); smallest: 2
    with pytest.raises(ParameterError, match="grid"):
        distill.column_bias(logits, y, 1, [])


def test_merged_teachers_sum_to_one():
    p1 = torch.softmax(torch.randn(5, 3), -1)
    p2 = torch.rand(5)
    q = distill.merge_teachers(p1, p2)
    assert q.shape == (5, 4)
    assert torch.allclose(q.sum(-1), torch.ones(5)) and torch.allclose(q[:, -1], p2)
    # relative probabilities among Network 1's own digits are Network 1's
    assert torch.allclose(q[:, :3] / q[:, :3].sum(-1, keepdim=True), p1, atol=1e-6)


def test_merged_logits_reproduce_targets():
    n1, n2, x = models.wide_nn(3), models.deep_nn(3), torch.rand(4, 784)
    z = distill.merged_logits(n1, n2, x, 1, 3.0)
    with torch.no_grad():
        want = distill.merge_teachers(distill.soft_targets(n1(x), 3.0), distill.soft_targets(n2(x), 3.0)[:, 1])
    assert torch.allclose(distill.soft_targets(z, 3.0), want, atol=1e-5)


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterError, match="T="):
        distill.soft_targets(torch.zeros(1, 2), 0.0)
    with pytest.raises(ParameterError, match="T="):
        distill.distill_loss(torch.zeros(1, 2), torch.ones(1, 2) / 2, -1.0)
    nets = [models.wide_nn(3)]
    own = Split(torch.rand(3, 784), torch.tensor([0, 1, 2]))
    with pytest.raises(ParameterError, match="transfer=2"):
        distill.distill_into(nets, nets, own, own.x, own.x, [0, 1, 2], [2, 3, 4], 2, [0], T=2.0)
    with pytest.raises(ParameterError, match="temperatures"):
        distill.omitted_digit(models.wide_nn, models.deep_nn, own, own, own, [0], temperatures=())


def test_distill_into_trains_a_grown_network_1():
    g = torch.Generator().manual_seed(0)
    own = Split(torch.rand(30, 784, generator=g), torch.tensor([0, 1, 2] * 10))
    n1 = [models.wide_nn(3), models.wide_nn(3)]
    n2 = [models.deep_nn(3), models.deep_nn(3)]
    unlabelled = torch.rand(12, 784, generator=g)
    col2 = [2, 3, 4].index(3)
    T = 2.0
    targets = [distill.soft_targets(distill.merged_logits(a, b, unlabelled, col2, T), T) for a, b in zip(n1, n2)]
    with torch.no_grad():
        before = [distill.grow_head(copy.deepcopy(n), 1, s)(unlabelled) for n, s in zip(n1, [0, 1])]
    reps, cpu = distill.distill_into(n1, n2, own, unlabelled, torch.rand(8, 784, generator=g),
                                     [0, 1, 2], [2, 3, 4], 3, [0, 1], T=T, fit=distill.Fit(max_epochs=40))
    assert reps.logits(own.x).shape == (2, 30, 4) and cpu > 0  # the head grew by the transfer digit
    after = reps.logits(unlabelled).detach()
    # each replica starts as its Network 1 with a grown head and trains, new column included
    for k in range(2):
        assert after[k].shape == before[k].shape == (12, 4) and targets[k].shape == (12, 4)
        assert not torch.allclose(after[k], before[k], atol=1e-3)
        assert not torch.allclose(after[k][:, 3], before[k][:, 3], atol=1e-3)
    assert not torch.allclose(after[0], after[1])  # two seeds, two replicas


def test_diagram_is_a_figure():
    fig = distill.diagram()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "teacher" in texts and "student" in texts and "soft targets" in texts
    plt.close(fig)


@pytest.mark.parametrize("n_extra, n_rows", [(5, 60), (100, 100)])
def test_label_rows_use_every_labelled_image(n_extra, n_rows):
    own = Split(torch.rand(180, 784), torch.arange(3).repeat(60))  # 60 images of each of 0, 1, 2
    extra = Split(torch.rand(n_extra, 784), torch.full((n_extra,), 3))
    rows = distill.label_rows(own, extra, [0, 1, 2], 3)
    assert len(rows) == n_rows
    assert (rows.y[:, 3] == 1).all() and (rows.y[:, -1] == 1).all()  # one-hot class 3 at T = 1
    assert len({tuple(r.tolist()) for r in rows.x}) == n_extra  # no labelled image left out


def test_temperature_note_says_where_the_choice_sits():
    from xferutils.chapters.what_works import distillation as distill
    assert distill.temperature_note(2, [0.5, 1, 2, 5]) == "inside the grid"
    assert "lowest" in distill.temperature_note(0.5, [0.5, 1, 2])
    assert "highest" in distill.temperature_note(20, [1, 5, 20])


def test_match_share_uses_no_labels_and_hits_the_share():
    # class 1 is predicted where its shifted logit beats 0: logit gaps 1, 0.5, -3, -1
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.5], [1.0, -2.0], [1.0, 0.0]])
    assert distill.match_share(logits, 1, 0.0, [0.0, 0.75, 1.5, 5.0]) == 0.0
    assert distill.match_share(logits, 1, 0.75, [0.0, 0.75, 1.5, 5.0]) == 1.5  # 3 of 4 above
    assert distill.match_share(logits, 1, 1.0, [0.0, 0.75, 1.5, 5.0]) == 5.0
    with pytest.raises(ParameterError, match="share"):
        distill.match_share(logits, 1, 1.5)
    with pytest.raises(ParameterError, match="grid"):
        distill.match_share(logits, 1, 0.5, [])


def test_teacher_config_names_what_changes_the_weights():
    a = distill.teacher_config(800, 0.2, 0, 8, data_seed=0)
    assert a["arch"] == [784, 800, 800, 10] and a["dropout"] == 0.2 and a["device"] == "cpu"
    assert distill.teacher_config(800, 0.2, 0, 8, data_seed=1) != a
    with pytest.raises(ParameterError, match="dropout"):
        distill.teacher_config(800, 1.5, 0, 8, data_seed=0)
    with pytest.raises(ParameterError, match="hidden"):
        distill.teacher_config(0, 0.2, 0, 8, data_seed=0)


def _digits(n, seed):
    """Separable toy 'digits': class c lights up pixels 70c..70c+69."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = 0.1 * torch.rand(n, 784, generator=g)
    for c in range(10):
        x[y == c, 70 * c:70 * c + 70] += 1.0
    return Split(x, y)


def test_hinton_teacher_is_stored_and_students_never_see_the_omitted_digit(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_STORE", str(tmp_path))
    train, val, test = _digits(400, 0), _digits(200, 1), _digits(200, 2)
    cfg = distill.teacher_config(32, 0.2, 0, 5, data_seed=0, lr=1e-2, batch_size=50)
    teacher = distill.hinton_teacher(train, val, [0], cfg)
    assert teacher.evaluate(test)[0] > 0.9
    assert list(tmp_path.glob("hinton-teacher-*/seed0.pt"))
    again = distill.hinton_teacher(train, val, [0], cfg)  # read back, not retrained
    assert torch.equal(again.logits(test.x), teacher.logits(test.x))
    fit = distill.Fit(lr=1e-2, max_epochs=6, patience=3)
    o = distill.hinton_students(teacher, train, val, test, [0, 1], hidden=16, omit=3, T=20.0, fit=fit)
    assert set(o.students) == {"hard labels", "T=20"} and o.chosen_T == 20.0
    assert o.n_test_omit == int((test.y == 3).sum())
    for r in o.students.values():
        assert len(r["omit_after"]) == 2 and all(b >= 0 for b in r["bias"])
    with pytest.raises(ParameterError, match="T="):
        distill.hinton_students(teacher, train, val, test, [0], hidden=16, T=0.0)
    table = distill.hinton_table(o, "2 × 32", "2 × 16")
    assert "Hinton et al. 2015" in table and "206" in table


def test_mean_or_one_does_not_invent_a_spread_for_one_seed():
    assert distill.mean_or_one([0.98]) == "98.0 (1 seed)"
    assert distill.mean_or_one([0.98], note=False) == "98.0"
    assert "±" in distill.mean_or_one([0.5, 0.7]) and distill.mean_or_one([0.5, 0.7]).startswith("60.0")
    with pytest.raises(ParameterError, match="values"):
        distill.mean_or_one([])


def test_criteria_table_marks_only_what_a_verdict_decides():
    from xferutils.pages.claims import TRIVIAL, Family, Question

    fam = Family("t", questions=[Question("q", "criteria", 1.0)])
    fam.threshold("t-transfer", "book", "transfer > 80", [77.0, 70.0, 86.0], 80.0, question="q", unit="%")
    fam.threshold("t-retention", "book", "retention > 90", [60.0, 61.0, 59.5], 90.0, question="q", unit="%")
    verdicts = fam.verdicts()
    assert (verdicts["t-transfer"].verdict, verdicts["t-retention"].verdict) == ("not shown", "contradicted")
    m = {"transfer": [0.77, 0.70, 0.86], "retention": [0.60, 0.61, 0.595], "isolation": [0.0, 0.0, 0.0],
         "images": [1000.0, 2000.0, 3000.0], "scratch_images": [4000.0, 4000.0, 4000.0]}
    rows = [("zero labels", m, {"transfer": "t-transfer", "retention": "t-retention", "isolation": TRIVIAL}),
            ("no claims", m, {})]
    lines = distill.criteria_table(rows, verdicts).splitlines()
    # not shown reads "?", never "✗"; a cell without a claim carries no mark at all
    assert lines[2] == "| zero labels | ? 77.7 | ✗ 60.2 | – trivial | 2,000 vs 4,000 images | no |"
    assert lines[3] == "| no claims | 77.7 | 60.2 | 0.0 | 2,000 vs 4,000 images | not decided |"
    with pytest.raises(ParameterError, match="unknown criteria"):
        distill.criteria_table([("x", m, {"speed": "t-transfer"})], verdicts)


def test_images_to_stop_counts_the_kept_epochs_rows_per_seed():
    from xferutils.core.ensemble import Replicas
    from xferutils.core.train import History

    reps = Replicas(torch.nn.Identity(), {}, {}, [0, 1],
                    [History(loss=[1.0] * 5, best_epoch=3), History(loss=[1.0] * 2, best_epoch=1)])
    assert distill.images_to_stop(reps, 100) == [300.0, 100.0]
    assert distill.images_to_stop(reps, [100, 50]) == [300.0, 50.0]
    with pytest.raises(ParameterError, match="rows"):
        distill.images_to_stop(reps, [100])


