"""The claims module: synthetic data whose right verdict is known."""
import json
import math

import numpy as np
import pytest

from xferutils.pages import claims
from xferutils.pages.claims import CONTRADICTED, EQUIVALENT, NOT_SHOWN, SUPPORTED, Family, Question
from xferutils.core.config import ParameterError


def test_t_distribution_matches_tables():
    # two-sided 5 % critical values of Student's t (standard tables)
    for df, t in [(1, 12.706), (4, 2.776), (9, 2.262), (29, 2.045)]:
        assert 2 * claims.t_sf(t, df) == pytest.approx(0.05, abs=2e-4)
        assert claims.t_quantile(0.975, df) == pytest.approx(t, abs=2e-3)
    assert claims.t_sf(0.0, 7) == pytest.approx(0.5)
    assert claims.t_sf(-2.776, 4) == pytest.approx(0.975, abs=2e-4)


def test_holm_adjusts_step_down():
    adjusted = claims.holm([0.01, 0.04, 0.03, 0.2])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert claims.holm([]) == []


def test_mde_matches_the_normal_approximation_for_many_seeds():
    # n large: (z_{0.975} + z_{0.8}) * sd / sqrt(n) = (1.960 + 0.842) * 1 / 10
    assert claims.mde(1.0, 100) == pytest.approx(0.2802, abs=3e-3)
    assert claims.mde(1.0, 100, m=5) > claims.mde(1.0, 100)  # a larger family needs a larger effect
    assert math.isnan(claims.mde(1.0, 1))


def noisy(mean, n=8, sd=0.01, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def Fam(name="t", margin=0.01):
    """A family with one question that takes every claim (the unit tests' default)."""
    return Family(name, questions=[Question("q", "all", margin=margin, claims=("*",))])


def test_direction_verdicts():
    fam = Fam()
    fam.direction("win", "s", "a beats b", noisy(0.9), noisy(0.8, seed=1))
    fam.direction("lose", "s", "a beats b", noisy(0.7), noisy(0.8, seed=2))
    fam.direction("tie", "s", "a beats b", noisy(0.8, sd=0.05, seed=3), noisy(0.8, sd=0.05, seed=4))
    fam.direction("less", "s", "a is lower", noisy(0.7), noisy(0.8, seed=5), expect="less")
    v = fam.verdicts()
    assert [v[k].verdict for k in ("win", "lose", "tie", "less")] == [SUPPORTED, CONTRADICTED, NOT_SHOWN, SUPPORTED]
    assert v["tie"].label == "not shown (8 seeds)"
    assert v["win"].ci[0] < v["win"].difference < v["win"].ci[1]


def test_direction_is_paired_by_seed():
    # a large seed effect shared by both methods, a small consistent gain: only pairing sees it
    base = np.array([0.5, 0.9, 0.6, 0.8, 0.7])
    fam = Fam()
    fam.direction("gain", "s", "a > b", base + 0.01, base)
    assert fam.evaluate()[0].verdict == SUPPORTED


def test_holm_turns_a_marginal_claim_into_not_shown():
    # one comparison alone is significant (p ~ 0.03); among ten claims it is not
    a = [0.0, 0.02, 0.04, 0.03, 0.01]
    b = [0.0] * 5
    single = Fam("one")
    single.direction("x", "s", "a > b", a, b)
    assert single.evaluate()[0].verdict == SUPPORTED
    many = Fam("ten")
    many.direction("x", "s", "a > b", a, b)
    for i in range(9):
        many.direction(f"null{i}", "s", "a > b", noisy(0.5, 5, seed=10 + i), noisy(0.5, 5, seed=30 + i))
    v = many.verdicts()["x"]
    assert v.p < 0.05 < v.p_adjusted and v.verdict == NOT_SHOWN
    assert v.interval[0] > 0 > v.interval_adjusted[0]  # the adjusted interval is the one that decides


def test_threshold_and_value_claims():
    fam = Fam()
    fam.threshold("above", "s", "at least 90 %", noisy(0.95), 0.90)
    fam.threshold("below", "s", "at least 90 %", noisy(0.60), 0.90)
    fam.threshold("at_most", "s", "at most 10 %", noisy(0.05), 0.10, expect="at_most")
    fam.value("same", "s", "94 %", noisy(0.941, sd=0.002), 0.94, tol=0.01)
    fam.value("far", "s", "94 %", noisy(0.60), 0.94, tol=0.01)
    fam.value("vague", "s", "94 %", noisy(0.93, n=3, sd=0.05), 0.94, tol=0.01)
    v = fam.verdicts()
    assert v["above"].verdict == SUPPORTED and v["below"].verdict == CONTRADICTED
    assert v["at_most"].verdict == SUPPORTED
    assert v["same"].verdict == SUPPORTED and v["far"].verdict == CONTRADICTED
    assert v["vague"].verdict == NOT_SHOWN and v["vague"].label == "not shown (3 seeds)"


def test_exact_and_single_seed():
    fam = Fam()
    fam.value("count", "s", "~0.1 % of parameters", [0.071], 0.001, tol=0.001, exact=True)
    fam.threshold("one", "s", "above 0.5", [0.9], 0.5)
    v = fam.verdicts()
    assert v["count"].verdict == CONTRADICTED and v["count"].question is None and v["count"].p is None
    assert v["one"].verdict == NOT_SHOWN and v["one"].n == 1 and math.isnan(v["one"].ci[0])


def test_says_generates_words_from_the_verdict():
    fam = Fam()
    fam.direction("w", "s", "a > b", noisy(0.9), noisy(0.8, seed=1))
    assert fam.evaluate()[0].says("beats", "trails", "ties with", "?") == "beats"
    assert claims.compare_pair(noisy(0.5), noisy(0.6, seed=1), margin=0.02) == "less"
    assert claims.compare_pair(noisy(0.5, sd=0.001), noisy(0.5, sd=0.001, seed=1), margin=0.02) == "equivalent"
    assert claims.compare_pair(noisy(0.5, n=3, sd=0.1), noisy(0.5, n=3, sd=0.1, seed=1), margin=0.02) == "undecided"


@pytest.mark.parametrize("bad", [
    dict(kind="direction", expect="greater", values=(1.0,), baseline=None),
    dict(kind="threshold", expect="at_least", values=(1.0,), claimed=None),
    dict(kind="value", expect="greater", values=(1.0,), claimed=1.0),
    dict(kind="size", expect="greater", values=(1.0,)),
    dict(kind="threshold", expect="at_least", values=(), claimed=1.0),
])
def test_bad_claims_are_refused(bad):
    with pytest.raises(ParameterError):
        claims.Claim("x", "s", "t", **bad)


def test_duplicate_ids_refused():
    fam = Fam()
    fam.threshold("a", "s", "t", [1.0, 2.0], 0.0)
    with pytest.raises(ParameterError, match="already"):
        fam.threshold("a", "s", "t", [1.0, 2.0], 0.0)


def test_compare_cli(tmp_path, capsys):
    fam = Fam()
    fam.threshold("a", "s", "t", noisy(0.95), 0.9)
    fam.threshold("b", "s", "t", noisy(0.95), 0.9)
    book = [v.as_dict() for v in fam.evaluate()]
    full = json.loads(json.dumps(book))
    (tmp_path / "book.json").write_text(json.dumps({"claims": book}))
    (tmp_path / "same.json").write_text(json.dumps({"claims": full}))
    assert claims.main(["compare", str(tmp_path / "book.json"), str(tmp_path / "same.json")]) == 0
    full[1]["verdict"] = NOT_SHOWN  # a change that is not a flip: reported, exit 0
    (tmp_path / "full.json").write_text(json.dumps({"claims": full}))
    assert claims.main(["compare", str(tmp_path / "book.json"), str(tmp_path / "full.json")]) == 0
    out = capsys.readouterr().out
    assert "b" in out and "1 differ" in out and "0 flip" in out
    assert claims.main(["compare", str(tmp_path / "nope.json"), str(tmp_path / "full.json")]) == 2
    full[0]["verdict"] = CONTRADICTED  # supported -> contradicted: a flip, exit 1
    (tmp_path / "flip.json").write_text(json.dumps({"claims": full}))
    assert claims.main(["compare", str(tmp_path / "book.json"), str(tmp_path / "flip.json")]) == 1
    assert "FLIP" in capsys.readouterr().out


def test_kept_runs_at_another_preset_show_their_changed_verdicts(tmp_path):
    def family(values):
        fam = Fam("scale")
        fam.direction("x-gain", "book", "a beats b", values, [0.5] * len(values))
        fam.threshold("x-bar", "book", "a reaches 0.6", [0.9] * len(values), 0.6)
        return fam
    book = family([0.9, 0.91, 0.92, 0.9, 0.93])  # supported at book
    full = family([0.5, 0.52, 0.49, 0.5, 0.48, 0.5, 0.51, 0.5, 0.5, 0.49])  # not at full
    for preset, fam in (("book", book), ("full", full)):
        res = tmp_path / "results" / f"{preset}.json"
        res.parent.mkdir(exist_ok=True)
        res.write_text(json.dumps({"chapter": "99_x", "preset": preset, "environment": f"python 3 | {preset}",
                                   **fam.as_dict()}))
        kept = claims.keep(res, tmp_path / "scale")
        assert kept == tmp_path / "scale" / "99_x" / f"{preset}.json"
    note = claims.scale_note("99_x", "book", book.evaluate(), tmp_path / "scale")
    assert ("At `full` (10 seeds at most, on machine not recorded): 1 of the 2 claims of both runs changes "
            "verdict: 1 goes between a shown difference and a shown equivalence; none reverses direction") in note
    assert "| `x-gain` | supported (5): +0.412 | equivalent (10): −0.001 ⚠ |" in note  # both cannot hold
    assert "⚠ `x-gain` does not hold at both scales" in note
    assert "(10)" in note and "`book` (seeds)" in note
    assert "At `book`" not in note  # the run itself is not compared with itself
    kept = json.loads((tmp_path / "scale" / "99_x" / "full.json").read_text())
    kept["environment"] = "xferutils | device cuda (NVIDIA H100) | amp auto: fp32 | preset full"
    (tmp_path / "scale" / "99_x" / "full.json").write_text(json.dumps(kept))
    assert "(10 seeds at most, on cuda (NVIDIA H100))" in claims.scale_note("99_x", "book", book.evaluate(), tmp_path / "scale")
    assert "not been run at another preset" in claims.scale_note("98_y", "book", [], tmp_path / "scale")
    same = claims.scale_note("99_x", "full", full.evaluate(), tmp_path / "scale")  # against book
    assert "1 of the 2 claims of both runs changes verdict" in same
    only = [v for v in book.evaluate() if v.id == "x-bar"]
    assert "the one claim of both runs keeps its verdict" in claims.scale_note("99_x", "book", only, tmp_path / "scale")
    bad = tmp_path / "results" / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ParameterError, match="results_path"):
        claims.keep(bad, tmp_path / "scale")


# --- questions, the four outcomes, and the evidence each carries ------------------------------

def test_equivalence_needs_a_tost_against_the_declared_margin():
    fam = Family("t")
    fam.ask("q", "are a and b the same?", claims=("same*",), margin=1.0)
    fam.direction("same-tight", "s", "a beats b", noisy(80.0, 10, 0.2), noisy(80.0, 10, 0.2, seed=1), unit="points")
    fam.direction("same-loose", "s", "a beats b", noisy(80.0, 4, 3.0), noisy(80.0, 4, 3.0, seed=2), unit="points")
    v = fam.verdicts()
    assert v["same-tight"].verdict == EQUIVALENT and v["same-tight"].margin == 1.0
    assert v["same-tight"].label == "equivalent (±1.0 points)"
    assert v["same-loose"].verdict == NOT_SHOWN  # wide spread: neither a difference nor equivalence
    assert "is equivalent to" in claims.compare(v["same-tight"], "a", "b")


def test_a_threshold_at_its_bound_is_not_shown_never_equivalent():
    fam = Family("t")
    fam.ask("q", "is the gap within 1 point?", claims=("gap",), margin=1.0)
    gaps = noisy(-1.0, 10, 0.1)  # sits on the bound, tightly: within ±1 of it, on neither side
    fam.threshold("gap", "s", "the gap is at least -1 point", gaps, -1.0, unit="points")
    v = fam.verdicts()["gap"]
    assert v.verdict == NOT_SHOWN and v.label == "not shown (10 seeds)"
    assert "undecided at 10 seeds" in v.evidence()


def test_undecided_carries_its_adjusted_interval_and_mde():
    fam = Family("t")
    fam.ask("q", "does a beat b?", claims=("x",), margin=0.5)
    a, b = noisy(80.0, 5, 2.0), noisy(80.5, 5, 2.0, seed=7)
    fam.direction("x", "s", "a beats b", a, b, unit="points")
    v = fam.verdicts()["x"]
    d = np.subtract(a, b)
    assert v.verdict == NOT_SHOWN
    expect_mde = (claims.t_quantile(0.975, 4) + claims.t_quantile(0.8, 4)) * d.std(ddof=1) / math.sqrt(5)
    assert v.mde == pytest.approx(expect_mde)
    assert v.interval_adjusted == pytest.approx(v.interval)  # a family of one: no adjustment
    words = claims.compare(v, "a", "b")
    assert "is not shown to differ from" in words and "undecided at 5 seeds" in words and "detected ±" in words
    assert "indistinguishable" not in words and "≈" not in words


def test_zero_variance_is_reported_as_such_and_stays_out_of_the_family():
    fam = Family("t")
    fam.ask("q", "q", claims=("*",))
    fam.direction("const", "s", "a beats b", [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], unit="points")
    fam.direction("same", "s", "a beats b", [5.0] * 4, [5.0] * 4, unit="points")
    fam.direction("real", "s", "a beats b", noisy(1.0), noisy(0.0, seed=3), unit="points")
    v = fam.verdicts()
    assert v["const"].zero_variance and v["const"].p is None and v["const"].verdict == SUPPORTED
    assert "every one of 3 seeds identical" in v["const"].evidence()
    assert v["same"].verdict == EQUIVALENT and v["same"].zero_variance
    assert fam.sizes() == {"q": 1}  # only the tested claim counts for Holm


def test_holm_runs_per_question_not_per_chapter():
    a = [0.0, 0.02, 0.04, 0.03, 0.01]
    fam = Family("t")
    fam.ask("main", "main", claims=("x",), margin=0.001)
    fam.ask("other", "other", claims=("null*",), margin=0.001)
    fam.direction("x", "s", "a > b", a, [0.0] * 5)
    for i in range(9):
        fam.direction(f"null{i}", "s", "a > b", noisy(0.5, 5, seed=10 + i), noisy(0.5, 5, seed=30 + i))
    v = fam.verdicts()
    assert v["x"].verdict == SUPPORTED and v["x"].p_adjusted == pytest.approx(v["x"].p)
    assert fam.sizes() == {"main": 1, "other": 9}


def test_claims_are_assigned_to_declared_questions_only():
    fam = Family("t")
    fam.ask("q", "q", claims=("ch9-*",))
    with pytest.raises(ParameterError, match="question"):
        fam.threshold("other-claim", "s", "t", [1.0, 2.0], 0.0)
    with pytest.raises(ParameterError, match="not declared"):
        fam.threshold("x", "s", "t", [1.0, 2.0], 0.0, question="nope")
    with pytest.raises(ParameterError, match="already declared"):
        fam.ask("q", "again")
    fam.ask("q2", "overlapping", claims=("ch9-a*",))
    with pytest.raises(ParameterError, match="one question"):
        fam.threshold("ch9-ab", "s", "t", [1.0, 2.0], 0.0)
    assert fam.threshold("ch9-b", "s", "t", [1.0, 2.0], 0.0).question == "q"


def test_a_mirror_is_the_same_test_read_the_other_way():
    fam = Fam()
    fam.direction("a-beats-b", "s", "a beats b", noisy(0.9), noisy(0.8, seed=1))
    fam.mirror("b-beats-a", "a-beats-b", "s", "b beats a")
    v = fam.verdicts()
    assert v["b-beats-a"].verdict == CONTRADICTED and v["b-beats-a"].mirror_of == "a-beats-b"
    assert v["b-beats-a"].difference == pytest.approx(-v["a-beats-b"].difference)
    assert fam.sizes() == {"q": 1}
    assert claims.compare(v["b-beats-a"], "b", "a").startswith("b trails a")


def test_results_carry_the_evidence_and_merge_is_exact():
    def run(seeds):
        fam = Family("99_x")
        fam.ask("q", "does a beat b?", claims=("*",), margin=0.01)
        rng = [np.random.default_rng(s) for s in seeds]  # each seed's values depend on that seed alone
        fam.direction("gain", "s", "a beats b", [0.8 + r.normal(0, 0.01) for r in rng], [0.79] * len(seeds))
        fam.threshold("bar", "s", "a reaches 0.7", [0.75 + 0.01 * (s % 3) for s in seeds], 0.7)
        d = fam.as_dict()
        return {"chapter": "99_x", "preset": "book", "params": {"seed0": seeds[0], "n_seeds": len(seeds), "k": 1},
                "environment": "xferutils 0.1.0 | torch 2 | device cpu", **d}
    one = run(list(range(10)))
    for c in one["claims"]:
        for key in ("question", "primary", "n", "difference", "interval", "interval_adjusted", "p_adjusted",
                    "margin", "mde", "verdict", "values"):
            assert key in c
    merged = claims.merge([run(list(range(5, 10))), run(list(range(5)))])
    assert [c["verdict"] for c in merged["claims"]] == [c["verdict"] for c in one["claims"]]
    assert merged["claims"][0]["values"] == pytest.approx(one["claims"][0]["values"])
    assert merged["params"]["seed0"] == 0 and merged["params"]["n_seeds"] == 10
    with pytest.raises(ParameterError, match="seed 3"):
        claims.merge([run([0, 1, 2, 3]), run([3, 4])])
    other = run([5, 6])
    other["params"]["k"] = 2
    with pytest.raises(ParameterError, match="parameters differ"):
        claims.merge([run([0, 1]), other])
    other = run([5, 6])
    other["environment"] = "xferutils 0.2.0 | torch 2 | device cpu"
    with pytest.raises(ParameterError, match="versions"):
        claims.merge([run([0, 1]), other])


def test_numbers_on_the_page_never_read_minus_zero():
    assert claims.signed(-0.0001, "points") == "0.0" and claims.signed(-1.26, "points") == "−1.3"
    # an interval's end just short of 0 keeps a digit: it must not read as touching 0
    assert claims.signed(-0.02, "points") == "−0.02" and claims.signed(0.004, "points") == "+0.004"
    assert claims.signed(2.0, "points") == "+2.0" and claims.magnitude(9.5e-07) == "9.5 × 10⁻⁷"
    assert claims.plural(1, "seed") == "1 seed" and claims.plural(3, "seed") == "3 seeds"


@pytest.mark.parametrize("chapter", ["01_dense_baseline", "02_framework", "03_strategies", "04_shared_layers",
                                     "05_what_works", "06_mixture_traversal", "07_negative_results"])
def test_every_chapter_decides_its_claims_in_declared_questions(chapter):
    """The chapters' results (written by the notebooks at smoke in this test session): every claim
    answers a declared question of at most a dozen tested claims, no id twice, no timing in a
    family, and each claim carries the evidence the page shows."""
    from xferutils.pages.results import results_dir

    path = results_dir() / chapter / "smoke.json"
    if not path.is_file():
        pytest.skip(f"{chapter} has not run at smoke here (run the notebooks first)")
    data = json.loads(path.read_text())
    questions = {q["id"] for q in data["questions"]}
    ids = [c["id"] for c in data["claims"]]
    assert questions and len(ids) == len(set(ids))
    fam = Family.from_results(data)
    assert max(fam.sizes().values()) <= claims.FAMILY_LIMIT
    for c in data["claims"]:
        assert c["question"] in questions or c["exact"], c["id"]
        assert c["unit"] not in ("s", "seconds"), f"{c['id']}: a timing decides nothing"
        assert c["verdict"] in claims.VERDICTS
        if c["verdict"] == NOT_SHOWN and c["n"] > 1 and not c["zero_variance"]:
            assert c["mde"] is not None and c["interval_adjusted"][0] is not None, c["id"]
    again = {v.id: v.verdict for v in fam.evaluate()}  # the stored verdicts are the module's
    assert again == {c["id"]: c["verdict"] for c in data["claims"]}


def test_a_run_with_more_seeds_at_the_same_preset_is_kept_under_its_name(tmp_path):
    fam = Fam("more")
    fam.direction("x", "book", "a beats b", noisy(0.9, n=20), noisy(0.5, n=20, seed=1))
    res = tmp_path / "book.json"
    res.write_text(json.dumps({"chapter": "99_x", "preset": "book", **fam.as_dict()}))
    kept = claims.keep(res, tmp_path / "scale", name="book-20-seeds")
    assert kept.name == "book-20-seeds.json"
    note = claims.scale_note("99_x", "book", fam.evaluate(), tmp_path / "scale")
    assert note.startswith("At `book-20-seeds` (20 seeds at most")
    with pytest.raises(ParameterError, match="name"):
        claims.keep(res, tmp_path / "scale", name="../up")


def with_p(p: float, n: int = 8) -> list[float]:
    """Per-seed differences whose two-sided paired t-test gives exactly ``p``."""
    z = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 0.0][:n])
    z = (z - z.mean()) / z.std(ddof=1)
    return list(1.0 + z * math.sqrt(n) / claims.t_quantile(1 - p / 2, n - 1))


def test_the_adjusted_interval_agrees_with_holms_decision_at_every_step():
    """Holm decides its later steps at wider levels than Bonferroni's α/m: the adjusted interval
    is taken at the claim's own step, so it excludes 0 exactly when the difference is shown."""
    fam = Family("t")
    fam.ask("q", "q", claims=("*",), margin=0.1)
    for i, p in enumerate([0.001, 0.015, 0.03, 0.2]):  # Holm: 0.004, 0.045, 0.06, 0.2
        fam.direction(f"c{i}", "s", "a beats b", with_p(p), [0.0] * 8)
    v = fam.verdicts()
    assert [round(v[f"c{i}"].p, 4) for i in range(4)] == [0.001, 0.015, 0.03, 0.2]
    assert [v[f"c{i}"].verdict for i in range(4)] == [SUPPORTED, SUPPORTED, NOT_SHOWN, NOT_SHOWN]
    for x in v.values():
        assert (x.interval_adjusted[0] > 0) == (x.p_adjusted < claims.ALPHA)
    # the second step is decided at 1 − α/3: a Bonferroni interval (1 − α/4) would contain 0 there
    assert claims.holm_level(v["c1"].p, v["c1"].p_adjusted) == pytest.approx(1 - claims.ALPHA / 3)
    assert claims.interval(with_p(0.015), 1 - claims.ALPHA / 4)[0] < 0 < v["c1"].interval_adjusted[0]
    assert v["c0"].interval_adjusted == pytest.approx(claims.interval(with_p(0.001), 1 - claims.ALPHA / 4))


def test_criteria_table_marks_cells_by_verdicts_and_reads_all_of_them():
    fam = claims.Family("t", questions=[claims.Question("q", "criteria", 1.0)])
    fam.threshold("t-hi", "book", "above 80", [90.0, 91.0, 92.0, 90.5], 80.0, question="q", unit="%")
    fam.threshold("t-lo", "book", "above 90", [60.0, 61.0, 59.5, 60.5], 90.0, question="q", unit="%")
    v = fam.verdicts()
    assert (v["t-hi"].verdict, v["t-lo"].verdict) == (claims.SUPPORTED, claims.CONTRADICTED)
    rows = [(["a"], [("90.9", v["t-hi"]), ("", claims.TRIVIAL)]),
            (["b"], [("90.9", v["t-hi"]), ("60.2", v["t-lo"])]),
            (["c"], [("90.9", v["t-hi"]), ("1.0", None)])]
    lines = claims.criteria_table(["method"], ["x > 80", "y > 90"], rows).splitlines()
    assert lines[0] == "| method | x > 80 | y > 90 | all |"
    assert lines[2:] == ["| a | ✓ 90.9 | – trivial | yes |", "| b | ✓ 90.9 | ✗ 60.2 | no |",
                         "| c | ✓ 90.9 | 1.0 | not decided |"]
    assert claims.all_of([claims.SUPPORTED, claims.NOT_SHOWN]) == "not decided"
    with pytest.raises(ParameterError, match="criterion cells"):
        claims.criteria_table(["method"], ["x > 80", "y > 90"], [(["a"], [("1", None)])])


def test_change_kind_says_what_a_change_of_verdict_means():
    k = claims.change_kind
    assert k(SUPPORTED, CONTRADICTED) == k(CONTRADICTED, SUPPORTED) == "reverses"
    assert k(CONTRADICTED, EQUIVALENT) == k(EQUIVALENT, SUPPORTED) == "conflicts"
    assert k(SUPPORTED, NOT_SHOWN) == k(EQUIVALENT, NOT_SHOWN) == "lost"
    assert k(NOT_SHOWN, CONTRADICTED) == k(NOT_SHOWN, EQUIVALENT) == "gained"
    assert k("absent", SUPPORTED) == "absent"
    assert set(claims.CHANGES) == {"reverses", "conflicts", "lost", "gained", "absent"}
    assert all(one != many for one, many in claims.CHANGES.values())  # "1 is decided", "4 are decided"


def test_kept_verdicts_are_decided_again_by_todays_rules():
    fam = Fam("kept")
    fam.direction("x-gain", "book", "a beats b", [0.9, 0.91, 0.92, 0.9], [0.5] * 4)
    data = {"chapter": "99_x", "preset": "full", **fam.as_dict()}
    today = {c["id"]: c["verdict"] for c in data["claims"]}
    data["claims"][0]["verdict"] = "contradicted"  # as an older rule might have stored it
    assert claims.kept_verdicts(data)["x-gain"]["verdict"] == today["x-gain"] == SUPPORTED
    old = {"claims": [{"id": "y", "verdict": "equivalent", "n": 3}]}  # no questions: kept as stored
    assert claims.kept_verdicts(old)["y"]["verdict"] == "equivalent"
