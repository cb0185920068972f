"""Claims and their verdicts: one tested rule for every chapter, and the one place where a
verdict becomes words.

A chapter first declares its research *questions* (:meth:`Family.ask`), in code that runs before
any training: each question is a family of a handful of claims with an equivalence margin stated
in advance. A *claim* says something measurable: a method beats another (``direction``), a
quantity is at least / at most a threshold (``threshold``), or a quantity equals a stated value
within a tolerance (``value``). It is decided from per-seed measurements, paired by seed:

1. per-seed differences d (a − b, or value − claimed);
2. a paired t-test of their mean (``scipy.stats``) and two one-sided tests (TOST) against the
   question's margin ±m;
3. Holm's step-down correction (``statsmodels``) within the question, separately for the
   difference tests and the equivalence tests;
4. one of four verdicts: ``supported`` or ``contradicted`` (the difference is shown, its sign says
   which), ``equivalent`` (shown to lie within ±m), or ``not shown`` — then the verdict carries the
   adjusted interval and the minimum detectable effect (MDE): the difference the run would have
   found with 80 % power at its seeds and family size. Only a comparison (``direction``) can be
   *equivalent*: a ``threshold`` claim whose quantity sits within ±m of its bound is *not shown*
   either way. The adjusted interval is taken at the level
   of the claim's Holm step (:func:`holm_level`), so it excludes 0 exactly when the difference is
   shown.

A ``value`` claim is *supported* when its equivalence to the stated value is shown and
*contradicted* when a difference beyond ±tol is. Deterministic quantities (``exact=True``:
parameter counts, a gradient check) and claims whose seeds all gave the same difference (zero
variance) are compared directly, outside every family: they carry no p-value.

:func:`says` / :meth:`Verdict.says` and :func:`compare` turn verdicts into words; :func:`table`
is the claims table of every chapter and the ledger. ``python -m xferutils.claims compare A B``
lists the claims whose verdict differs between two results files (for example ``book`` and
``full``) and exits 1 when one flips between supported and contradicted.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from xferutils.core.config import ParameterError, check_choice, check_float
from xferutils.pages.results import plural, tidy

SUPPORTED, CONTRADICTED, EQUIVALENT, NOT_SHOWN = "supported", "contradicted", "equivalent", "not shown"
VERDICTS = (SUPPORTED, CONTRADICTED, EQUIVALENT, NOT_SHOWN)
KINDS = ("direction", "threshold", "value")
EXPECT = {"direction": ("greater", "less"), "threshold": ("at_least", "at_most"), "value": ("equal",)}
ALPHA = 0.05
POWER = 0.8
FAMILY_LIMIT = 12  # a question with more claims than this is a chapter, not a question


# --- statistics (scipy, statsmodels) -----------------------------------------------------------

def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    return float(stats.t.sf(t, df))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t."""
    return float(stats.t.ppf(q, df))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    if len(pvalues) == 0:
        return []
    return [float(p) for p in multipletests(list(pvalues), alpha=ALPHA, method="holm")[1]]


def mde(sd: float, n: int, m: int = 1, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a paired two-sided t-test: the mean difference found with
    probability ``power`` at ``n`` seeds, at the first (strictest) Holm step of a family of ``m``."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return (t_quantile(1 - alpha / (2 * m), n - 1) + t_quantile(power, n - 1)) * sd / math.sqrt(n)


def interval(d: Sequence[float], level: float = 1 - ALPHA) -> tuple[float, float]:
    """The t-interval of the mean of ``d`` at confidence ``level`` (NaN below two values)."""
    n = len(d)
    mean = float(np.mean(d))
    if n < 2:
        return math.nan, math.nan
    half = t_quantile(0.5 + level / 2, n - 1) * float(np.std(d, ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def tost(d: Sequence[float], margin: float) -> float:
    """p-value of two one-sided tests that the mean of ``d`` lies within ±``margin``."""
    n = len(d)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(d))
    return max(t_sf((mean + margin) / se, n - 1), t_sf((margin - mean) / se, n - 1))


def outside(d: Sequence[float], tol: float) -> float:
    """p-value that the mean of ``d`` lies outside ±``tol`` (the two one-sided tests, Bonferroni)."""
    n = len(d)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(d))
    return min(1.0, 2 * min(t_sf((mean - tol) / se, n - 1), t_sf((-tol - mean) / se, n - 1)))


# --- questions and claims ----------------------------------------------------------------------

@dataclass(frozen=True)
class Question:
    """A research question of a chapter: the family its claims are corrected within.

    ``margin`` is the equivalence margin in ``unit`` (e.g. 1 point of accuracy), declared with
    the question, before any data.
    """

    id: str
    text: str
    margin: float = 1.0
    unit: str = "points"
    claims: tuple[str, ...] = ()
    primary: bool = True

    def covers(self, claim_id: str) -> bool:
        """Whether ``claim_id`` matches one of the question's claim patterns (``fnmatch``)."""
        return any(fnmatch.fnmatchcase(claim_id, pat) for pat in self.claims)


@dataclass(frozen=True)
class Claim:
    """One measurable claim and the per-seed values that test it.

    ``values`` are the measurements of the claimed method (one per seed); ``baseline`` the paired
    measurements of the method it is compared with (``direction`` claims only). ``claimed`` is
    the threshold or stated value; ``tol`` the tolerance of a ``value`` claim. ``question`` names
    the family (None only for ``exact`` claims, which are measurements); ``primary`` marks the
    question's main contrasts.
    """

    id: str
    source: str
    text: str
    kind: str
    expect: str
    values: tuple[float, ...]
    baseline: tuple[float, ...] | None = None
    claimed: float | None = None
    tol: float = 0.0
    exact: bool = False
    unit: str = ""
    question: str | None = None
    primary: bool = True
    margin: float | None = None  # the equivalence margin, where it differs from the question's

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_choice("expect", self.expect, EXPECT[self.kind])
        if not self.values:
            raise ParameterError(f"claim {self.id!r}: values is empty; give one value per seed")
        if self.kind == "direction":
            if self.baseline is None or len(self.baseline) != len(self.values):
                raise ParameterError(f"claim {self.id!r}: a direction claim needs a baseline paired "
                                     f"by seed ({len(self.values)} values)")
        elif self.claimed is None:
            raise ParameterError(f"claim {self.id!r}: a {self.kind} claim needs claimed=<number>")
        if self.kind == "value":
            check_float("tol", self.tol, 0.0)

    @property
    def differences(self) -> list[float]:
        """Per-seed differences: a − b, or value − claimed."""
        ref = self.baseline if self.kind == "direction" else [self.claimed] * len(self.values)
        return [float(a) - float(b) for a, b in zip(self.values, ref)]

    @property
    def tested(self) -> bool:
        """True when a test decides the claim (not exact, two or more seeds, not all identical)."""
        d = self.differences
        return not self.exact and len(d) > 1 and max(d) != min(d)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim: what was claimed, what was measured, the evidence, the verdict."""

    id: str
    source: str
    text: str
    kind: str
    expect: str
    claimed: float | None
    measured: float
    baseline: float | None
    difference: float
    interval: tuple[float, float]
    interval_adjusted: tuple[float, float]
    n: int
    p: float | None
    p_adjusted: float | None
    p_equivalence: float | None
    margin: float | None
    mde: float | None
    verdict: str
    unit: str = ""
    question: str | None = None
    primary: bool = True
    exact: bool = False
    zero_variance: bool = False
    tol: float = 0.0
    values: tuple[float, ...] = ()
    baselines: tuple[float, ...] | None = None
    mirror_of: str | None = None
    claim_margin: float | None = None  # the claim's own margin, where it overrides the question's
    extra: dict[str, Any] = field(default_factory=dict)

    def flipped(self, id: str | None = None, text: str | None = None, source: str | None = None) -> "Verdict":
        """The same comparison read the other way round (b against a): one test, two readings."""
        if self.kind != "direction":
            raise ParameterError(f"claim {self.id!r}: only a direction claim can be read the other way round")
        lo, hi = self.interval
        alo, ahi = self.interval_adjusted
        swap = {SUPPORTED: CONTRADICTED, CONTRADICTED: SUPPORTED}
        return replace(self, id=id or self.id, text=text or self.text, source=source or self.source,
                       measured=self.baseline, baseline=self.measured, difference=-self.difference,
                       interval=(-hi, -lo), interval_adjusted=(-ahi, -alo),
                       verdict=swap.get(self.verdict, self.verdict), values=self.baselines or (),
                       baselines=self.values, mirror_of=self.id if id else self.mirror_of)

    @property
    def ci(self) -> tuple[float, float]:
        """The unadjusted 95 % interval of the mean difference."""
        return self.interval

    @property
    def label(self) -> str:
        """``supported``, ``contradicted``, ``equivalent (±1 point)`` or ``not shown (5 seeds)``."""
        if self.verdict == NOT_SHOWN:
            return f"{NOT_SHOWN} ({plural(self.n, 'seed')})"
        if self.verdict == EQUIVALENT:
            return f"{EQUIVALENT} (±{magnitude(self.margin, self.unit)} {self.unit})".replace(" )", ")")
        return self.verdict

    @property
    def decided(self) -> bool:
        return self.verdict != NOT_SHOWN

    @property
    def a_greater(self) -> bool | None:
        """For a shown difference: whether the claimed quantity is the larger; else None."""
        if self.verdict not in (SUPPORTED, CONTRADICTED) or self.kind == "value":
            return None
        wants_up = self.expect in ("greater", "at_least")
        return (self.verdict == SUPPORTED) == wants_up

    def says(self, supported: str, contradicted: str, equivalent: str, undecided: str) -> str:
        """The words for this verdict: prose that cannot contradict its numbers."""
        return {SUPPORTED: supported, CONTRADICTED: contradicted, EQUIVALENT: equivalent,
                NOT_SHOWN: undecided}[self.verdict]

    def evidence(self) -> str:
        """The numbers behind the words: the difference and its interval; for an undecided claim
        the adjusted interval and what the run could have detected."""
        u = f" {self.unit}" if self.unit else ""
        diff = signed(self.difference, self.unit)
        if self.zero_variance:
            return f"{diff}{u}, every one of {plural(self.n, 'seed')} identical"
        if self.exact or self.n < 2:
            return f"{diff}{u}" + ("" if self.exact else ", one seed")
        if self.verdict == NOT_SHOWN:
            lo, hi = self.interval_adjusted
            return (f"undecided at {plural(self.n, 'seed')}: {diff}{u}, adjusted interval "
                    f"[{signed(lo, self.unit)},\u00a0{signed(hi, self.unit)}]; it could have detected "
                    f"±{magnitude(self.mde, self.unit)}{u}")
        lo, hi = self.interval
        text = f"{diff}{u} [{signed(lo, self.unit)},\u00a0{signed(hi, self.unit)}]"
        if self.verdict == EQUIVALENT:
            text += f", within ±{magnitude(self.margin, self.unit)}"
        return text

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"], d["interval_adjusted"] = list(self.interval), list(self.interval_adjusted)
        d["values"] = list(self.values)
        d["baselines"] = None if self.baselines is None else list(self.baselines)
        d["label"] = self.label
        return d


class Family:
    """A chapter's claims, grouped into its declared questions; each question is one Holm family."""

    def __init__(self, name: str, alpha: float = ALPHA,
                 questions: Iterable[Question] = ()) -> None:
        self.name = name
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.questions: dict[str, Question] = {}
        self.claims: list[Claim] = []
        self.mirrors: dict[str, tuple[str, str, str, bool]] = {}
        for q in questions:
            self.ask(q.id, q.text, margin=q.margin, unit=q.unit, claims=q.claims, primary=q.primary)

    def __len__(self) -> int:
        return len(self.claims)

    def ask(self, id: str, text: str, *, claims: Sequence[str] = (), margin: float = 1.0,
            unit: str = "points", primary: bool = True) -> Question:
        """Declare a research question before the data: its id, its text, the ids (``fnmatch``
        patterns) of the claims that answer it, its equivalence margin, and whether its contrasts
        are primary."""
        if id in self.questions:
            raise ParameterError(f"question {id!r} is already declared in {self.name!r}")
        check_float("margin", margin, 0.0)
        self.questions[id] = Question(id, text, float(margin), unit, tuple(claims), bool(primary))
        return self.questions[id]

    def add(self, claim: Claim) -> Claim:
        if any(c.id == claim.id for c in self.claims):
            raise ParameterError(f"claim id {claim.id!r} is already in family {self.name!r}")
        if claim.question is None and not claim.exact:
            found = [q for q in self.questions.values() if q.covers(claim.id)]
            if len(found) > 1:
                raise ParameterError(f"claim {claim.id!r} matches questions {[q.id for q in found]}; "
                                     "a claim answers one question")
            if found:
                claim = replace(claim, question=found[0].id, primary=found[0].primary)
        if claim.question is None and not claim.exact:
            raise ParameterError(f"claim {claim.id!r}: give question=<one of {sorted(self.questions)}> "
                                 "(only exact claims stand outside every question)")
        if claim.question is not None and claim.question not in self.questions:
            raise ParameterError(f"claim {claim.id!r}: question={claim.question!r} is not declared; "
                                 f"declared: {sorted(self.questions)} (declare it with Family.ask first)")
        self.claims.append(claim)
        return claim

    def mirror(self, id: str, of: str, source: str, text: str, flip: bool = True) -> None:
        """Register claim ``id`` as the comparison ``of`` read the other way round (b beats a;
        ``flip=False``: the same way round, under another claim's name): no second test; its
        verdict is ``of``'s (flipped)."""
        if id in self.mirrors or any(c.id == id for c in self.claims):
            raise ParameterError(f"claim id {id!r} is already in family {self.name!r}")
        if not any(c.id == of and c.kind == "direction" for c in self.claims):
            raise ParameterError(f"mirror {id!r}: of={of!r} is not a direction claim of {self.name!r}")
        self.mirrors[id] = (of, source, text, flip)

    def direction(self, id: str, source: str, text: str, a: Sequence[float], b: Sequence[float], *,
                  question: str | None = None, primary: bool = True, expect: str = "greater",
                  exact: bool = False, unit: str = "", margin: float | None = None) -> Claim:
        """``a`` (the claimed winner) is greater (or less) than ``b``, paired by seed; ``margin``
        overrides the question's equivalence margin (for a claim in other units)."""
        return self.add(Claim(id, source, text, "direction", expect, _floats(a), _floats(b),
                              exact=exact, unit=unit, question=question, primary=primary, margin=margin))

    def threshold(self, id: str, source: str, text: str, values: Sequence[float], claimed: float, *,
                  question: str | None = None, primary: bool = True, expect: str = "at_least",
                  exact: bool = False, unit: str = "") -> Claim:
        """The quantity is at least (or at most) ``claimed``."""
        return self.add(Claim(id, source, text, "threshold", expect, _floats(values),
                              claimed=float(claimed), exact=exact, unit=unit, question=question,
                              primary=primary))

    def value(self, id: str, source: str, text: str, values: Sequence[float], claimed: float, *,
              tol: float, question: str | None = None, primary: bool = True, exact: bool = False,
              unit: str = "") -> Claim:
        """The quantity equals ``claimed`` within ``±tol``."""
        return self.add(Claim(id, source, text, "value", "equal", _floats(values),
                              claimed=float(claimed), tol=float(tol), exact=exact, unit=unit,
                              question=question, primary=primary))

    def sizes(self) -> dict[str, int]:
        """How many tested claims each question holds (its Holm family size)."""
        out = {q: 0 for q in self.questions}
        for c in self.claims:
            if c.question is not None and c.tested:
                out[c.question] += 1
        return out

    def evaluate(self) -> list[Verdict]:
        """Every claim's verdict, Holm-corrected within its question, in the order added (decided
        once for each state of the family: claims are only ever added)."""
        key = (len(self.claims), len(self.mirrors))
        if getattr(self, "_decided", (None, None))[0] != key:
            self._decided = (key, self._evaluate())
        return list(self._decided[1])

    def _evaluate(self) -> list[Verdict]:
        out: dict[str, Verdict] = {}
        for qid in [*self.questions, None]:
            members = [c for c in self.claims if c.question == qid]
            tested = [c for c in members if c.tested]
            m = len(tested)
            margin = self.questions[qid].margin if qid is not None else None
            own = {c.id: c.tol if c.kind == "value" else c.margin if c.margin is not None else margin
                   for c in members}
            p_diff = holm([_p_difference(c) for c in tested])
            p_eq = holm([tost(c.differences, own[c.id]) for c in tested])
            for c, pd_, pe in zip(tested, p_diff, p_eq):
                out[c.id] = _tested_verdict(c, pd_, pe, m, own[c.id], self.alpha)
            for c in members:
                if not c.tested:
                    out[c.id] = _direct_verdict(c, own[c.id])
        mirrored = [out[of].flipped(id, text, source) if flip else
                    replace(out[of], id=id, text=text, source=source, mirror_of=of)
                    for id, (of, source, text, flip) in self.mirrors.items()]
        return [out[c.id] for c in self.claims] + mirrored

    def verdicts(self) -> dict[str, Verdict]:
        """:meth:`evaluate` as a dict by claim id."""
        return {v.id: v for v in self.evaluate()}

    def as_dict(self) -> dict[str, Any]:
        """The questions and the claims' verdicts, as a results file keeps them."""
        return {"questions": [asdict(q) for q in self.questions.values()],
                "claims": [v.as_dict() for v in self.evaluate()]}

    @classmethod
    def from_results(cls, data: Mapping[str, Any], name: str | None = None) -> "Family":
        """The family a results file was decided from (its questions and per-seed values)."""
        fam = cls(name or str(data.get("chapter", "family")),
                  questions=[Question(**{**q, "claims": tuple(q.get("claims") or ())})
                             for q in data.get("questions") or []])
        for c in data.get("claims", []):
            if c.get("mirror_of"):
                same = (c.get("values") or []) == next((x.get("values") for x in data["claims"]
                                                        if x["id"] == c["mirror_of"]), None)
                fam.mirror(c["id"], c["mirror_of"], c["source"], c["text"], flip=not same)
                continue
            if "values" not in c:
                raise ParameterError(f"claim {c.get('id')!r} has no per-seed values; re-run the chapter "
                                     "with this version of xferutils")
            fam.add(claim_from_dict(c))
        return fam


def claim_from_dict(c: Mapping[str, Any]) -> Claim:
    """The :class:`Claim` behind a stored verdict dict."""
    return Claim(c["id"], c["source"], c["text"], c["kind"], c["expect"], _floats(c["values"]),
                 None if c.get("baselines") is None else _floats(c["baselines"]), c.get("claimed"),
                 float(c.get("tol") or 0.0), bool(c.get("exact")), c.get("unit") or "",
                 c.get("question"), bool(c.get("primary", True)), c.get("claim_margin"))


def _p_difference(c: Claim) -> float:
    """Two-sided p of the paired test (``direction``, ``threshold``), or of being outside ±tol."""
    d = c.differences
    if c.kind == "value":
        return outside(d, c.tol)
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def _tested_verdict(c: Claim, p_diff: float, p_eq: float, m: int, margin: float | None,
                    alpha: float) -> Verdict:
    d = c.differences
    n = len(d)
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1))
    eq_margin = margin
    if c.kind == "value":  # the claim is the equivalence: inside ±tol supports it, outside refutes it
        verdict = SUPPORTED if p_eq < alpha else CONTRADICTED if p_diff < alpha else NOT_SHOWN
    elif p_diff < alpha:
        verdict = SUPPORTED if (mean > 0) == (c.expect in ("greater", "at_least")) else CONTRADICTED
    else:  # a threshold sitting within ±margin of its bound answers neither side of the claim
        verdict = EQUIVALENT if p_eq < alpha and c.kind == "direction" else NOT_SHOWN
    p = _p_difference(c)
    return _verdict(c, mean, interval(d), interval(d, holm_level(p, p_diff, alpha)), p, p_diff, eq_margin,
                    mde(sd, n, m, alpha), verdict, p_eq=p_eq)


def holm_level(p: float, p_adjusted: float, alpha: float = ALPHA) -> float:
    """The confidence level of a claim's adjusted interval: ``1 − α·p/p_adjusted``, the level at
    which Holm's step decided it (``1 − α/m`` for the smallest of m p-values). The interval then
    excludes 0 exactly when ``p_adjusted < α``: it agrees with the verdict, which a Bonferroni
    interval (always ``1 − α/m``) does not for Holm's later steps."""
    if not p_adjusted > 0:  # p = 0: decided at any level; the unadjusted one
        return 1 - alpha
    return 1 - alpha * min(1.0, p / p_adjusted)


def _direct_verdict(c: Claim, margin: float | None) -> Verdict:
    """Exact, single-seed or zero-variance claims: compared directly, no test, no p-value."""
    d = c.differences
    mean = float(np.mean(d))
    n = len(d)
    if n < 2 and not c.exact:
        verdict = NOT_SHOWN
    elif c.kind == "value":
        verdict = SUPPORTED if abs(mean) <= c.tol else CONTRADICTED
    elif mean == 0:
        verdict = EQUIVALENT
    else:
        verdict = SUPPORTED if (mean > 0) == (c.expect in ("greater", "at_least")) else CONTRADICTED
    iv = (mean, mean) if (c.exact or n > 1) else (math.nan, math.nan)
    return _verdict(c, mean, iv, iv, None, None, margin,
                    None if n > 1 or c.exact else math.nan, verdict, zero_variance=not c.exact and n > 1)


def _verdict(c: Claim, mean: float, iv: tuple[float, float], iv_adj: tuple[float, float],
             p: float | None, p_adj: float | None, margin: float | None, mde_: float | None,
             verdict: str, zero_variance: bool = False, p_eq: float | None = None) -> Verdict:
    return Verdict(
        id=c.id, source=c.source, text=c.text, kind=c.kind, expect=c.expect, claimed=c.claimed,
        measured=float(np.mean(c.values)), baseline=float(np.mean(c.baseline)) if c.baseline else None,
        difference=mean, interval=iv, interval_adjusted=iv_adj, n=len(c.values), p=p, p_adjusted=p_adj,
        p_equivalence=p_eq, margin=margin, mde=mde_ if verdict == NOT_SHOWN else None, verdict=verdict, unit=c.unit,
        question=c.question, primary=c.primary, exact=c.exact, zero_variance=zero_variance, tol=c.tol,
        values=c.values, baselines=c.baseline, claim_margin=c.margin)


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return tuple(float(v) for v in values)


# --- words and tables: the only place a verdict becomes prose -----------------------------------

GAIN = "points of gain"  # the unit of a comparison between two gains (differences of accuracy)


def _digits(unit: str) -> int | None:
    return 1 if unit in ("points", GAIN, "%", "pts", "epochs", "steps", "labels") else None


def magnitude(x: float | None, unit: str = "") -> str:
    """A magnitude for the page: one decimal for accuracy-like units, else three significant
    digits without e-notation where it can be avoided; ``–`` for a missing value."""
    if x is None or not math.isfinite(x):
        return "–"
    d = _digits(unit)
    if d is not None:
        return f"{abs(x):.{d}f}" if round(abs(x), d) != 0 else f"{0:.{d}f}"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{abs(x):.3g}"
    return tidy(f"{abs(x):.2g}")  # "9.5 × 10⁻⁷" rather than "9.5e-07"


def signed(x: float | None, unit: str = "") -> str:
    """A difference for the page: ``+1.2``, ``−0.4`` (a true minus), ``0.0`` (never ``-0.0``).
    A value that one decimal would round to 0 but is not (an interval's end just short of 0) keeps
    one significant digit, ``−0.03``, so that an interval that excludes 0 never reads as touching it."""
    if x is None or not math.isfinite(x):
        return "–"
    text = magnitude(x, unit)
    if _digits(unit) is not None and text.strip("0.") == "" and 5e-4 <= abs(x):
        text = f"{abs(x):.1g}"
    if text.strip("0.") == "" or text == "0":
        return text
    return ("+" if x > 0 else "−") + text


def says(v: Verdict | Mapping[str, Any], supported: str, contradicted: str, equivalent: str,
         undecided: str) -> str:
    """:meth:`Verdict.says` for a verdict or a stored verdict dict."""
    verdict = v.verdict if isinstance(v, Verdict) else v["verdict"]
    return {SUPPORTED: supported, CONTRADICTED: contradicted, EQUIVALENT: equivalent,
            NOT_SHOWN: undecided}[verdict]


def compare(v: Verdict, a: str, b: str, *, more: str = "beats", less: str = "trails",
            evidence: bool = True) -> str:
    """"A beats B (+2.1 points [+0.4, +3.8])", "A is equivalent to B (within ±1 point)", or "A is
    not shown to differ from B (undecided at 10 seeds: …; it could have detected ±2.6 points)".

    ``more`` and ``less`` are the verbs for a claimed quantity shown larger or smaller than its
    comparison (for error rates or epochs: "needs more epochs than" / "needs fewer epochs than").
    """
    return f"{a} {verb(v, more, less)} {b}" + (f" ({v.evidence()})" if evidence else "")


def verb(v: Verdict, more: str = "beats", less: str = "trails") -> str:
    """The verb of a comparison verdict: ``more`` / ``less`` for a shown difference, "is
    equivalent to" for a shown equivalence, "is not shown to differ from" when undecided."""
    if v.verdict == EQUIVALENT:
        return "is equivalent to"
    if v.verdict == NOT_SHOWN:
        return "is not shown to differ from"
    return more if v.a_greater else less


def table(verdicts: Iterable[Verdict | Mapping[str, Any]], *, prefix: str = "",
          questions: Mapping[str, Question] | None = None) -> str:
    """The claims table of every chapter: claim (with its id), verdict, seeds, the difference
    with its 95 % interval, and for an undecided claim its adjusted interval and what the run
    could have detected. Grouped under their questions when ``questions`` is given."""
    from xferutils.pages.plotting import markdown_table

    vs = [v if isinstance(v, Verdict) else verdict_from_dict(v) for v in verdicts]
    vs = [v for v in vs if v.id.startswith(prefix)]
    head = ["claim", "verdict", "seeds", "difference [95 %]", "adjusted [interval]; detectable"]
    rows = []
    for v in vs:
        u = "" if v.unit in ("", "points", "%") else f" {v.unit}"
        lo, hi = v.interval
        diff = signed(v.difference, v.unit) + u + ("" if math.isnan(lo) or v.exact or v.zero_variance
                                                   else f" [{signed(lo, v.unit)},\u00a0{signed(hi, v.unit)}]")
        if v.verdict == NOT_SHOWN and v.n > 1 and not v.zero_variance:
            a_lo, a_hi = v.interval_adjusted
            adj = f"[{signed(a_lo, v.unit)},\u00a0{signed(a_hi, v.unit)}]; ±{magnitude(v.mde, v.unit)}"
        elif v.zero_variance:
            adj = "every seed identical"
        elif v.exact:
            adj = "exact"
        elif v.mirror_of:
            adj = f"`{v.mirror_of}` read the other way"
        else:
            adj = ""
        q = f" ({questions[v.question].id})" if questions and v.question in questions else ""
        verdict = v.label if v.verdict == EQUIVALENT else v.verdict
        rows.append([f"{v.text}<br>`{v.id}`{q}", verdict, v.n, diff, adj])
    return markdown_table(head, rows, "llrrl")


MARK = {SUPPORTED: "✓", CONTRADICTED: "✗", NOT_SHOWN: "?"}  # a criterion's mark is its claim's verdict
TRIVIAL = "trivial"  # a criterion that holds trivially (chapter 4: isolation where nothing transfers)


def all_of(states: Sequence[str | None]) -> str:
    """Whether every criterion holds: "no" when one is contradicted, "yes" when all are supported
    (or :data:`TRIVIAL`), "not decided" otherwise (one undecided, or one without a claim: None)."""
    if CONTRADICTED in states:
        return "no"
    return "yes" if all(s in (SUPPORTED, TRIVIAL) for s in states) else "not decided"


def criteria_table(head: Sequence[str], criteria: Sequence[str],
                   rows: Sequence[tuple[Sequence[Any], Sequence[tuple[str, Verdict | str | None]]]]) -> str:
    """Markdown: criteria that claims decide, one row per method (document 000's four success
    criteria in chapters 4 and 5). ``rows`` are ``(leading cells, [(number, judged), ...])`` with
    one ``judged`` per criterion: the :class:`Verdict` of the claim that tests the cell (its mark
    ✓ / ✗ / ? before the number), :data:`TRIVIAL` (the cell reads "– trivial"), or None (a number
    without a claim, unmarked). The last column is :func:`all_of`. A mark is a verdict, nothing else."""
    from xferutils.pages.plotting import markdown_table

    out = []
    for lead, cells in rows:
        if len(cells) != len(criteria):
            raise ParameterError(f"a row has {len(cells)} criterion cells; give one per criterion {list(criteria)}")
        shown, states = [], []
        for number, judged in cells:
            if judged == TRIVIAL:
                shown.append(f"– {TRIVIAL}")
                states.append(TRIVIAL)
            elif judged is None:
                shown.append(number)
                states.append(None)
            else:
                if judged.verdict == EQUIVALENT:
                    raise ParameterError(f"{judged.id}: a criterion is a threshold or a direction, never equivalent")
                shown.append(f"{MARK[judged.verdict]} {number}")
                states.append(judged.verdict)
        out.append([*lead, *shown, all_of(states)])
    return markdown_table([*head, *criteria, "all four" if len(criteria) == 4 else "all"], out,
                          "l" * len(head) + "r" * len(criteria) + "l")


def verdict_from_dict(d: Mapping[str, Any]) -> Verdict:
    """A :class:`Verdict` from its stored dict (results files, ``scale/``)."""
    names = set(Verdict.__dataclass_fields__)
    kw = {k: d[k] for k in names if k in d}
    for k in ("interval", "interval_adjusted"):
        kw[k] = tuple(math.nan if x is None else x for x in d.get(k) or d.get("ci") or (math.nan, math.nan))
    kw["values"] = tuple(d.get("values") or ())
    kw["baselines"] = None if d.get("baselines") is None else tuple(d["baselines"])
    for k in ("p", "p_adjusted", "p_equivalence", "margin", "mde"):
        kw.setdefault(k, None)
    return Verdict(**kw)


def counts(verdicts: Iterable[Verdict | Mapping[str, Any]]) -> dict[str, int]:
    """How many verdicts of each kind (all four keys present)."""
    out = {k: 0 for k in VERDICTS}
    for v in verdicts:
        out[v.verdict if isinstance(v, Verdict) else v["verdict"]] += 1
    return out


def compare_pair(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA, margin: float = 1.0) -> str:
    """``"greater"``, ``"less"``, ``"equivalent"`` or ``"undecided"``: a paired test of a − b
    (one comparison, a family of one, equivalence within ±``margin``)."""
    fam = Family("pair", alpha, [Question("pair", "a against b", margin)])
    fam.direction("pair", "book", "a > b", a, b, question="pair")
    return fam.evaluate()[0].says("greater", "less", "equivalent", "undecided")


# --- comparing and merging results files --------------------------------------------------------

def load_claims(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``claims`` list of a results file, by id."""
    data = json.loads(Path(path).read_text())
    return {c["id"]: c for c in data.get("claims", [])}


def differences(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(id, verdict in a, verdict in b) for every claim whose verdict differs; a missing claim
    counts as ``absent``."""
    out = []
    for cid in sorted(set(a) | set(b)):
        va = a.get(cid, {}).get("verdict", "absent")
        vb = b.get(cid, {}).get("verdict", "absent")
        if va != vb:
            out.append((cid, va, vb))
    return out


def flips(diff: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The differences that reverse a decided direction: supported ↔ contradicted."""
    return [d for d in diff if {d[1], d[2]} == {SUPPORTED, CONTRADICTED}]


CHANGES = {  # what a change of verdict between two runs means (one claim, several), in a page's order
    "reverses": ("reverses direction (supported ↔ contradicted)", "reverse direction (supported ↔ contradicted)"),
    "conflicts": ("goes between a shown difference and a shown equivalence",
                  "go between a shown difference and a shown equivalence"),
    "lost": ("is decided here but undecided there", "are decided here but undecided there"),
    "gained": ("is undecided here but decided there", "are undecided here but decided there"),
    "absent": ("is in one run only", "are in one run only"),
}


def change_kind(here: str, there: str) -> str:
    """The key of :data:`CHANGES` for a verdict ``here`` that is ``there`` in another run. The
    first two cannot both be true of one effect (⚠ on a page: the chapter explains them); a
    decided verdict that becomes undecided means a smaller effect or more noise there."""
    decided = {SUPPORTED, CONTRADICTED}
    if "absent" in (here, there):
        return "absent"
    if {here, there} == decided:
        return "reverses"
    if EQUIVALENT in (here, there) and {here, there} & decided:
        return "conflicts"
    return "lost" if there == NOT_SHOWN else "gained"


SEED_PARAMS = ("seed0", "n_seeds")


def _versions(environment: str | None) -> str:
    """``xferutils 0.1.0 | torch 2.x`` from an environment line (what must match to merge)."""
    parts = (environment or "").split(" | ")
    return " | ".join(p for p in parts if p.split(" ")[0] in ("xferutils", "torch"))


def run_seeds(data: Mapping[str, Any]) -> range:
    """The seeds a results file's claims were measured on: seed0, seed0 + 1, … (n of its claims)."""
    n = max((len(c.get("values") or ()) for c in data.get("claims", [])), default=0)
    seed0 = int((data.get("params") or {}).get("seed0", 0))
    return range(seed0, seed0 + n)


def merge(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool the per-seed values of runs of one chapter at one preset and decide every claim again
    on the pooled seeds, with the same rules as a single run.

    Refuses (``ParameterError`` naming the mismatch) runs of different chapters, presets,
    parameters (other than ``seed0``/``n_seeds``), package versions, questions or claims, and
    runs whose seeds overlap.
    """
    if len(runs) < 2:
        raise ParameterError(f"runs: give at least two results files to merge (got {len(runs)})")
    runs = sorted(runs, key=lambda r: run_seeds(r).start)
    first = runs[0]
    for key in ("chapter", "preset"):
        got = {str(r.get(key)) for r in runs}
        if len(got) > 1:
            raise ParameterError(f"runs: different {key}s {sorted(got)}; merge runs of one {key}")
    strip = lambda r: {k: v for k, v in (r.get("params") or {}).items() if k not in SEED_PARAMS}  # noqa: E731
    for r in runs[1:]:
        if strip(r) != strip(first):
            keys = sorted(k for k in set(strip(r)) | set(strip(first)) if strip(r).get(k) != strip(first).get(k))
            raise ParameterError(f"runs: parameters differ ({', '.join(keys)}); merge runs of one setting")
        if _versions(r.get("environment")) != _versions(first.get("environment")):
            raise ParameterError(f"runs: package versions differ ({_versions(first.get('environment'))!r} "
                                 f"vs {_versions(r.get('environment'))!r})")
        if (r.get("questions") or []) != (first.get("questions") or []):
            raise ParameterError("runs: the declared questions differ; merge runs of one chapter version")
        ids_a, ids_b = [c["id"] for c in first.get("claims", [])], [c["id"] for c in r.get("claims", [])]
        if ids_a != ids_b:
            odd = sorted(set(ids_a) ^ set(ids_b)) or ["(order)"]
            raise ParameterError(f"runs: the claims differ ({', '.join(odd[:5])}); merge runs of one setting")
    seen: dict[int, int] = {}
    for i, r in enumerate(runs):
        for s in run_seeds(r):
            if s in seen:
                raise ParameterError(f"runs: seed {s} is in run {seen[s] + 1} and run {i + 1}; "
                                     "seeds must not overlap")
            seen[s] = i
    for i, r in enumerate(runs):
        n = len(run_seeds(r))
        for c in r["claims"]:
            if not c.get("exact") and not c.get("mirror_of") and len(c.get("values") or ()) != n:
                raise ParameterError(f"runs: claim {c['id']!r} of run {i + 1} has {len(c.get('values') or ())} "
                                     f"values for its {n} seeds; only claims measured once per seed can be "
                                     "pooled")
    pooled = []
    for parts in zip(*(r["claims"] for r in runs)):
        c = dict(parts[0])
        if c.get("exact"):  # a deterministic quantity: the same in every run, kept once
            for p in parts[1:]:
                if (set(p["values"]), set(p.get("baselines") or ())) != (set(c["values"]), set(c.get("baselines") or ())):
                    raise ParameterError(f"runs: exact claim {c['id']!r} measured {p['values']} in one run "
                                         f"and {c['values']} in another; merge runs of one setting")
            pooled.append(c)
            continue
        c["values"] = [x for p in parts for x in p["values"]]
        if c.get("baselines") is not None:
            c["baselines"] = [x for p in parts for x in p["baselines"]]
        pooled.append(c)
    fam = Family.from_results({"chapter": first.get("chapter"), "questions": first.get("questions"),
                               "claims": pooled})
    seeds = sorted(seen)
    params = dict(first.get("params") or {}, seed0=seeds[0], n_seeds=len(seeds))
    return {"chapter": first["chapter"], "preset": first["preset"], "params": params,
            "environment": first.get("environment"), "merged_from": [dict(seed0=run_seeds(r).start,
                                                                          n=len(run_seeds(r))) for r in runs],
            **fam.as_dict()}


# --- verdicts at other scales, kept in the repository (the chapters show them) -------------------

SCALE_DIR = Path(__file__).resolve().parents[2] / "scale"


def keep(results_path: str | Path, root: str | Path = SCALE_DIR, name: str | None = None) -> Path:
    """Copy the questions, claims, parameters and environment line of a results file
    (``results/<chapter>/<preset>.json``) to ``scale/<chapter>/<name or preset>.json``, which is
    committed: the chapter then shows which of its verdicts differ in that run
    (:func:`scale_note`). ``name`` tells apart a run at the page's own preset with other seeds
    (``book-20-seeds``)."""
    path = Path(results_path)
    data = json.loads(path.read_text())
    if not data.get("claims") or "chapter" not in data or "preset" not in data:
        raise ParameterError(f"results_path={str(path)!r} has no claims, chapter or preset; give a "
                             "results file written by Run.save(..., claims=family)")
    if data.get("questions") and all("values" in c for c in data["claims"]):  # decided again, current rules
        data.update(Family.from_results(data).as_dict())
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise ParameterError(f"name={name!r} is not allowed; give a file stem such as 'book-20-seeds'")
    out = Path(root) / data["chapter"] / f"{name or data['preset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: data.get(k) for k in ("chapter", "preset", "params", "environment", "questions",
                                     "claims", "merged_from") if k in data}
    out.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return out


def kept_runs(chapter: str, preset: str, root: str | Path = SCALE_DIR) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(name, contents)`` of every kept run of ``chapter`` (``scale/<chapter>/<name>.json``)
    other than the one at ``preset``, by name."""
    for path in sorted(Path(root, chapter).glob("*.json")):
        if path.stem != preset:
            yield path.stem, json.loads(path.read_text())


def kept_verdicts(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A kept run's verdicts by id, decided again from its stored per-seed values by the rules of
    this module (a change of rule since the run was kept is not a change of its result); a file
    without its declared questions (older than the questions) keeps its stored verdicts."""
    if data.get("questions"):
        return by_id(Family.from_results(data).evaluate())
    return {c["id"]: c for c in data.get("claims", [])}


def by_id(verdicts: Iterable[Verdict | Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Verdicts (objects or stored dicts) as stored dicts, keyed by claim id."""
    return {v["id"]: v for v in (dict(x) if isinstance(x, Mapping) else x.as_dict() for x in verdicts)}


def scale_note(chapter: str, preset: str, verdicts: Sequence[Verdict | dict[str, Any]],
               root: str | Path = SCALE_DIR) -> str:
    """Markdown for a chapter: for every kept run of ``chapter`` at another preset, the claims
    whose verdict differs from this run's ``verdicts``, each with both verdicts and seed counts,
    counted by what the change means (:func:`change_kind`); a change that cannot hold of one
    effect (a reversal, or a shown difference against a shown equivalence) is marked ⚠. The kept
    run's claims are decided again from their stored per-seed values with the rules of this
    module, so that a change of rule since that run was kept is not read as a change of result."""
    from xferutils.pages.plotting import markdown_table

    ours = by_id(verdicts)
    parts = []
    for name, data in kept_runs(chapter, preset, root):
        theirs = kept_verdicts(data)
        both = sorted(set(ours) & set(theirs))
        diff = differences({i: ours[i] for i in both}, {i: theirs[i] for i in both})
        env = data.get("environment") or ""
        where = env.split("device ", 1)[1].split(" | ", 1)[0] if "device " in env else "machine not recorded"
        where = where.split(" (", 1)[0] if where.startswith("cpu") else where
        seeds = max((c.get("n", 0) for c in theirs.values()), default=0)
        kinds = {cid: change_kind(va, vb) for cid, va, vb in diff}
        if not diff:
            what = ("the one claim of both runs keeps its verdict" if len(both) == 1 else
                    f"all {len(both)} claims of both runs keep their verdicts")
        else:
            counts_ = {k: sum(v == k for v in kinds.values()) for k in CHANGES}
            said = [f"{n} {CHANGES[k][n > 1]}" for k, n in counts_.items() if n]
            what = (f"{len(diff)} of the {len(both)} claims of both runs "
                    f"{'changes' if len(diff) == 1 else 'change'} verdict: " + "; ".join(said)
                    + ("" if counts_["reverses"] else "; none reverses direction"))
        head = f"At `{name}` ({plural(seeds, 'seed')} at most, on {where}): {what}."
        if diff:
            def cell(c: Mapping[str, Any], v: str) -> str:
                d = c.get("difference")
                return f"{v} ({c['n']}): {signed(d, c.get('unit', ''))}" if d is not None else f"{v} ({c['n']})"

            rows = [[f"`{cid}`", cell(ours[cid], va), cell(theirs[cid], vb)
                     + (" ⚠" if kinds[cid] in ("reverses", "conflicts") else "")] for cid, va, vb in diff]
            head += "\n\n" + markdown_table(["claim", f"`{preset}` (seeds): difference",
                                             f"`{name}` (seeds): difference"], rows, "lll")
            warned = [f"`{cid}`" for cid in kinds if kinds[cid] in ("reverses", "conflicts")]
            if warned:
                head += ("\n\n⚠ " + ", ".join(warned) + (" does" if len(warned) == 1 else " do")
                         + f" not hold at both scales: the verdict of one run is a finding about its budget "
                         f"(seeds, training length), not about the method, and no conclusion of this "
                         f"chapter should rest on it without the `{name}` run beside it.")
        parts.append(head)
    if not parts:
        return "This chapter has not been run at another preset yet."
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferutils.claims",
                                     description="Compare, keep and merge the claim verdicts of results files.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cmp_ = sub.add_parser("compare", help="list claims whose verdict differs between A and B; exit 1 "
                                          "when one flips between supported and contradicted")
    cmp_.add_argument("a")
    cmp_.add_argument("b")
    keep_ = sub.add_parser("keep", help="copy a results file's verdicts to scale/<chapter>/<preset>.json")
    keep_.add_argument("results")
    keep_.add_argument("--name", help="file stem under scale/<chapter>/ (default: the run's preset)")
    merge_ = sub.add_parser("merge", help="pool the seeds of runs of one chapter and preset, decide again")
    merge_.add_argument("runs", nargs="+")
    merge_.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    paths = {"compare": [args.a, args.b] if args.cmd == "compare" else [],
             "keep": [getattr(args, "results", "")], "merge": getattr(args, "runs", [])}[args.cmd]
    for p in paths:
        if not Path(p).is_file():
            print(f"error: results file {p} does not exist", file=sys.stderr)
            return 2
    try:
        if args.cmd == "keep":
            print("kept", keep(args.results, name=args.name).relative_to(SCALE_DIR.parent))
            return 0
        if args.cmd == "merge":
            from xferutils.pages.results import atomic_write_text

            from xferutils.pages.results import _plain

            merged = merge([json.loads(Path(p).read_text()) for p in args.runs])
            atomic_write_text(Path(args.output), json.dumps(_plain(merged), indent=2, sort_keys=True))
            c = counts(merged["claims"])
            print(f"merged {len(args.runs)} runs ({merged['params']['n_seeds']} seeds) -> {args.output}: "
                  + ", ".join(f"{n} {k}" for k, n in c.items()))
            return 0
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    a, b = load_claims(args.a), load_claims(args.b)
    diff = differences(a, b)
    flipped = flips(diff)
    print(f"{len(set(a) & set(b))} claims in both files; {len(diff)} differ; {len(flipped)} flip "
          "between supported and contradicted")
    width = max([len(cid) for cid, _, _ in diff] + [5])
    for cid, va, vb in diff:
        print(f"  {cid:<{width}}  {va:>12} -> {vb}" + ("   FLIP" if (cid, va, vb) in flipped else ""))
    return 1 if flipped else 0


if __name__ == "__main__":
    sys.exit(main())
