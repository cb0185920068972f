"""The claims module: synthetic data whose right verdict is known."""
import json
import math

import numpy as np
import pytest

from xferutils import claims
from xferutils.claims import CONTRADICTED, NOT_SHOWN, SUPPORTED, Family
from xferutils.config import ParameterError


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


def noisy(mean, n=8, sd=0.01, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def test_direction_verdicts():
    fam = Family("t")
    fam.direction("win", "s", "a beats b", noisy(0.9), noisy(0.8, seed=1))
    fam.direction("lose", "s", "a beats b", noisy(0.7), noisy(0.8, seed=2))
    fam.direction("tie", "s", "a beats b", noisy(0.8, seed=3), noisy(0.8, seed=4))
    fam.direction("less", "s", "a is lower", noisy(0.7), noisy(0.8, seed=5), expect="less")
    v = fam.verdicts()
    assert [v[k].verdict for k in ("win", "lose", "tie", "less")] == [SUPPORTED, CONTRADICTED, NOT_SHOWN, SUPPORTED]
    assert v["tie"].label == "not shown (8 seeds)"
    assert v["win"].ci[0] < v["win"].difference < v["win"].ci[1]


def test_direction_is_paired_by_seed():
    # a large seed effect shared by both methods, a small consistent gain: only pairing sees it
    base = np.array([0.5, 0.9, 0.6, 0.8, 0.7])
    fam = Family("t")
    fam.direction("gain", "s", "a > b", base + 0.01, base)
    assert fam.evaluate()[0].verdict == SUPPORTED


def test_holm_turns_a_marginal_claim_into_not_shown():
    # one comparison alone is significant (p ~ 0.03); among ten claims it is not
    a = [0.0, 0.02, 0.04, 0.03, 0.01]
    b = [0.0] * 5
    single = Family("one")
    single.direction("x", "s", "a > b", a, b)
    assert single.evaluate()[0].verdict == SUPPORTED
    many = Family("ten")
    many.direction("x", "s", "a > b", a, b)
    for i in range(9):
        many.direction(f"null{i}", "s", "a > b", noisy(0.5, 5, seed=10 + i), noisy(0.5, 5, seed=30 + i))
    v = many.verdicts()["x"]
    assert v.p < 0.05 < v.p_holm and v.verdict == NOT_SHOWN


def test_threshold_and_value_claims():
    fam = Family("t")
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
    fam = Family("t")
    fam.value("count", "s", "~0.1 % of parameters", [0.071], 0.001, tol=0.001, exact=True)
    fam.threshold("one", "s", "above 0.5", [0.9], 0.5)
    v = fam.verdicts()
    assert v["count"].verdict == CONTRADICTED
    assert v["one"].verdict == NOT_SHOWN and v["one"].n == 1 and math.isnan(v["one"].ci[0])


def test_says_generates_words_from_the_verdict():
    fam = Family("t")
    fam.direction("w", "s", "a > b", noisy(0.9), noisy(0.8, seed=1))
    assert fam.evaluate()[0].says("beats", "trails", "ties with") == "beats"
    assert claims.compare_pair(noisy(0.5), noisy(0.6, seed=1)) == "less"
    assert claims.compare_pair(noisy(0.5), noisy(0.5, seed=1)) == "tie"


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
    fam = Family("t")
    fam.threshold("a", "s", "t", [1.0, 2.0], 0.0)
    with pytest.raises(ParameterError, match="already"):
        fam.threshold("a", "s", "t", [1.0, 2.0], 0.0)


def test_compare_cli(tmp_path, capsys):
    fam = Family("t")
    fam.threshold("a", "s", "t", noisy(0.95), 0.9)
    fam.threshold("b", "s", "t", noisy(0.95), 0.9)
    book = [v.as_dict() for v in fam.evaluate()]
    full = json.loads(json.dumps(book))
    (tmp_path / "book.json").write_text(json.dumps({"claims": book}))
    (tmp_path / "same.json").write_text(json.dumps({"claims": full}))
    assert claims.main(["compare", str(tmp_path / "book.json"), str(tmp_path / "same.json")]) == 0
    full[1]["verdict"] = NOT_SHOWN
    (tmp_path / "full.json").write_text(json.dumps({"claims": full}))
    assert claims.main(["compare", str(tmp_path / "book.json"), str(tmp_path / "full.json")]) == 1
    out = capsys.readouterr().out
    assert "b" in out and "1 differ" in out
    assert claims.main(["compare", str(tmp_path / "nope.json"), str(tmp_path / "full.json")]) == 2


def test_kept_runs_at_another_preset_show_their_changed_verdicts(tmp_path):
    def family(values):
        fam = claims.Family("scale")
        fam.direction("x-gain", "book", "a beats b", values, [0.5] * len(values))
        fam.threshold("x-bar", "book", "a reaches 0.6", [0.9] * len(values), 0.6)
        return fam
    book = family([0.9, 0.91, 0.92, 0.9, 0.93])  # supported at book
    full = family([0.5, 0.52, 0.49, 0.5, 0.48, 0.5, 0.51, 0.5, 0.5, 0.49])  # not at full
    for preset, fam in (("book", book), ("full", full)):
        res = tmp_path / "results" / f"{preset}.json"
        res.parent.mkdir(exist_ok=True)
        res.write_text(json.dumps({"chapter": "99_x", "preset": preset, "environment": f"python 3 | {preset}",
                                   "claims": [v.as_dict() for v in fam.evaluate()]}))
        kept = claims.keep(res, tmp_path / "scale")
        assert kept == tmp_path / "scale" / "99_x" / f"{preset}.json"
    note = claims.scale_note("99_x", "book", book.evaluate(), tmp_path / "scale")
    assert "At `full` (up to 10 seeds; machine not recorded): 1 of the 2 claims of both runs changes verdict." in note
    assert "| `x-gain` | supported (5) |" in note and "(10)" in note and "`book` (seeds)" in note
    assert "At `book`" not in note  # the run itself is not compared with itself
    kept = json.loads((tmp_path / "scale" / "99_x" / "full.json").read_text())
    kept["environment"] = "xferutils | device cuda (NVIDIA H100) | amp auto: fp32 | preset full"
    (tmp_path / "scale" / "99_x" / "full.json").write_text(json.dumps(kept))
    assert "(up to 10 seeds; cuda (NVIDIA H100))" in claims.scale_note("99_x", "book", book.evaluate(), tmp_path / "scale")
    assert "No run of this chapter" in claims.scale_note("98_y", "book", [], tmp_path / "scale")
    same = claims.scale_note("99_x", "full", full.evaluate(), tmp_path / "scale")  # against book
    assert "1 of the 2 claims of both runs changes verdict" in same
    only = [v for v in book.evaluate() if v.id == "x-bar"]
    assert "the one claim of both runs keeps its verdict" in claims.scale_note("99_x", "book", only, tmp_path / "scale")
    bad = tmp_path / "results" / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ParameterError, match="results_path"):
        claims.keep(bad, tmp_path / "scale")
