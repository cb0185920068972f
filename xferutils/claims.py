"""Claims and their verdicts: one tested rule for every chapter.

A *claim* says something measurable: a method beats another (``direction``), a quantity is at
least / at most a threshold (``threshold``), or a quantity equals a stated value within a
tolerance (``value``). It is decided from per-seed measurements (paired by seed where two
methods are compared):

1. per-seed differences d (a − b, or value − claimed);
2. a 95 % t-interval of their mean and a t-test p-value;
3. Holm's step-down correction over the chapter's *family* of claims;
4. the verdict: ``supported``, ``contradicted`` or ``not shown (n seeds)``.

Equivalence (``value``) claims use two one-sided tests against ±tolerance. A claim about a
deterministic quantity (a parameter count) is ``exact``: it is compared directly.

Every chapter builds a :class:`Family`, adds its claims, and stores ``family.evaluate()`` in its
results file. ``python -m xferutils.claims compare A.json B.json`` lists the claims whose verdict
differs between two results files (for example the ``book`` and ``full`` runs) and exits 1 if
any does.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import ParameterError, check_choice, check_float

SUPPORTED, CONTRADICTED, NOT_SHOWN = "supported", "contradicted", "not shown"
KINDS = ("direction", "threshold", "value")
EXPECT = {"direction": ("greater", "less"), "threshold": ("at_least", "at_most"), "value": ("equal",)}
ALPHA = 0.05


# --- Student's t without scipy ------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`t_sf`)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


# --- claims and verdicts ------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One measurable claim and the per-seed values that test it.

    ``values`` are the measurements of the claimed method (one per seed); ``baseline`` the paired
    measurements of the method it is compared with (``direction`` claims only). ``claimed`` is
    the threshold or stated value; ``tol`` the tolerance of a ``value`` claim.
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


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim: what was claimed, what was measured, and the verdict."""

    id: str
    source: str
    text: str
    kind: str
    expect: str
    claimed: float | None
    measured: float
    baseline: float | None
    difference: float
    ci: tuple[float, float]
    n: int
    p: float
    p_holm: float
    verdict: str
    unit: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``supported``, ``contradicted`` or ``not shown (5 seeds)``."""
        return f"{NOT_SHOWN} ({self.n} seed{'s' if self.n != 1 else ''})" if self.verdict == NOT_SHOWN else self.verdict

    def says(self, supported: str, contradicted: str, not_shown: str) -> str:
        """The words for this verdict: prose that cannot contradict its numbers."""
        return {SUPPORTED: supported, CONTRADICTED: contradicted, NOT_SHOWN: not_shown}[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["label"] = self.label
        return d


def _decide(claim: Claim) -> tuple[float, tuple[float, float], float, dict[str, float]]:
    """Mean difference, its 95 % interval, the raw p-value of the claim's test, and side p-values."""
    d = claim.differences
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1)) if n > 1 else 0.0
    if n < 2 and not claim.exact:
        return mean, (math.nan, math.nan), 1.0, {"p_out": 1.0, "p_in": 1.0}
    if claim.exact or sd == 0.0:
        lo = hi = mean
        if claim.kind == "value":
            inside = abs(mean) <= claim.tol
            return mean, (lo, hi), 0.0, {"p_out": 1.0 if inside else 0.0, "p_in": 0.0 if inside else 1.0}
        return mean, (lo, hi), 0.0 if mean != 0 else 1.0, {}
    se = sd / math.sqrt(n)
    half = t_quantile(0.975, n - 1) * se
    ci = (mean - half, mean + half)
    if claim.kind == "value":
        tol = claim.tol
        p_in = max(t_sf((mean + tol) / se, n - 1), t_sf((tol - mean) / se, n - 1))  # TOST
        p_out = min(t_sf((mean - tol) / se, n - 1), t_sf((-tol - mean) / se, n - 1))
        return mean, ci, min(p_in, p_out), {"p_in": p_in, "p_out": p_out}
    p_two = 2 * t_sf(abs(mean) / se, n - 1)
    return mean, ci, min(1.0, p_two), {}


class Family:
    """A chapter's family of claims, decided together with Holm's correction."""

    def __init__(self, name: str, alpha: float = ALPHA) -> None:
        self.name = name
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.claims: list[Claim] = []

    def __len__(self) -> int:
        return len(self.claims)

    def add(self, claim: Claim) -> Claim:
        if any(c.id == claim.id for c in self.claims):
            raise ParameterError(f"claim id {claim.id!r} is already in family {self.name!r}")
        self.claims.append(claim)
        return claim

    def direction(self, id: str, source: str, text: str, a: Sequence[float], b: Sequence[float], *,
                  expect: str = "greater", exact: bool = False, unit: str = "") -> Claim:
        """``a`` (the claimed winner) is greater (or less) than ``b``, paired by seed."""
        return self.add(Claim(id, source, text, "direction", expect, _floats(a), _floats(b),
                              exact=exact, unit=unit))

    def threshold(self, id: str, source: str, text: str, values: Sequence[float], claimed: float, *,
                  expect: str = "at_least", exact: bool = False, unit: str = "") -> Claim:
        """The quantity is at least (or at most) ``claimed``."""
        return self.add(Claim(id, source, text, "threshold", expect, _floats(values),
                              claimed=float(claimed), exact=exact, unit=unit))

    def value(self, id: str, source: str, text: str, values: Sequence[float], claimed: float, *,
              tol: float, exact: bool = False, unit: str = "") -> Claim:
        """The quantity equals ``claimed`` within ``±tol``."""
        return self.add(Claim(id, source, text, "value", "equal", _floats(values),
                              claimed=float(claimed), tol=float(tol), exact=exact, unit=unit))

    def evaluate(self) -> list[Verdict]:
        """Every claim's verdict, with Holm's correction over the family."""
        decided = [_decide(c) for c in self.claims]
        raw = [p for _, _, p, _ in decided]
        adjusted = holm(raw) if raw else []
        out = []
        for c, (mean, ci, p, sides), p_adj in zip(self.claims, decided, adjusted):
            out.append(Verdict(
                id=c.id, source=c.source, text=c.text, kind=c.kind, expect=c.expect,
                claimed=c.claimed, measured=sum(c.values) / len(c.values),
                baseline=sum(c.baseline) / len(c.baseline) if c.baseline else None,
                difference=mean, ci=ci, n=len(c.values), p=p, p_holm=p_adj,
                verdict=_verdict(c, mean, p_adj, sides, self.alpha), unit=c.unit))
        return out

    def verdicts(self) -> dict[str, Verdict]:
        """:meth:`evaluate` as a dict by claim id."""
        return {v.id: v for v in self.evaluate()}


def _verdict(c: Claim, mean: float, p_adj: float, sides: dict[str, float], alpha: float) -> str:
    """Holm-adjusted p below alpha decides; the sign (or the equivalence side) says which way."""
    if p_adj >= alpha:
        return NOT_SHOWN
    if c.kind == "value":
        return SUPPORTED if sides["p_in"] <= sides["p_out"] else CONTRADICTED
    if p_adj >= alpha or mean == 0:
        return NOT_SHOWN
    wants_positive = c.expect in ("greater", "at_least")
    return SUPPORTED if (mean > 0) == wants_positive else CONTRADICTED


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return tuple(float(v) for v in values)


def compare_pair(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> str:
    """``"greater"``, ``"less"`` or ``"tie"``: a paired test of a − b (one comparison, no family)."""
    fam = Family("pair", alpha)
    fam.direction("pair", "book", "a > b", a, b)
    return fam.evaluate()[0].says("greater", "less", "tie")


# --- comparing two results files ----------------------------------------------------------------

def load_claims(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``claims`` list of a results file, by id."""
    data = json.loads(Path(path).read_text())
    return {c["id"]: c for c in data.get("claims", [])}


def differences(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(id, verdict in a, verdict in b) for every claim whose verdict differs; a missing claim
    counts as ``absent``."""
    out = []
    for cid in sorted(set(a) | set(b)):
        va = a.get(cid, {}).get("verdict", "absent")
        vb = b.get(cid, {}).get("verdict", "absent")
        if va != vb:
            out.append((cid, va, vb))
    return out


# --- verdicts at other scales, kept in the repository (the chapters show them) -------------------

SCALE_DIR = Path(__file__).resolve().parent.parent / "scale"


def keep(results_path: str | Path, root: str | Path = SCALE_DIR) -> Path:
    """Copy the claims, parameters and environment line of a results file
    (``results/<chapter>/<preset>.json``) to ``scale/<chapter>/<preset>.json``, which is committed:
    the chapter then shows which of its verdicts differ at that preset (:func:`scale_note`)."""
    path = Path(results_path)
    data = json.loads(path.read_text())
    if not data.get("claims") or "chapter" not in data or "preset" not in data:
        raise ParameterError(f"results_path={str(path)!r} has no claims, chapter or preset; give a "
                             "results file written by Run.save(..., claims=family)")
    out = Path(root) / data["chapter"] / f"{data['preset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: data.get(k) for k in ("chapter", "preset", "params", "environment", "claims")}
    out.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return out


def scale_note(chapter: str, preset: str, verdicts: Sequence[Verdict | dict[str, Any]],
               root: str | Path = SCALE_DIR) -> str:
    """Markdown for a chapter: for every kept run of ``chapter`` at another preset, the claims
    whose verdict differs from this run's ``verdicts``, each with both verdicts and seed counts."""
    from .plotting import markdown_table

    ours = {v["id"]: v for v in (x if isinstance(x, dict) else x.as_dict() for x in verdicts)}
    parts = []
    for path in sorted(Path(root, chapter).glob("*.json")):
        if path.stem == preset:
            continue
        data = json.loads(path.read_text())
        theirs = {c["id"]: c for c in data["claims"]}
        both = sorted(set(ours) & set(theirs))
        diff = [d for d in differences({i: ours[i] for i in both}, {i: theirs[i] for i in both})]
        env = data.get("environment") or ""
        where = env.split("device ", 1)[1].split(" | ", 1)[0] if "device " in env else "machine not recorded"
        seeds = max((c.get("n", 0) for c in theirs.values()), default=0)
        if not diff:
            what = ("the one claim of both runs keeps its verdict" if len(both) == 1 else
                    f"all {len(both)} claims of both runs keep their verdicts")
        else:
            what = (f"{len(diff)} of the {len(both)} claims of both runs "
                    f"{'changes' if len(diff) == 1 else 'change'} verdict")
        head = f"At `{path.stem}` (up to {seeds} seeds; {where}): {what}."
        if diff:
            rows = [[f"`{cid}`", f"{va} ({ours[cid]['n']})", f"{vb} ({theirs[cid]['n']})"] for cid, va, vb in diff]
            head += "\n\n" + markdown_table(["claim", f"`{preset}` (seeds)", f"`{path.stem}` (seeds)"], rows, "lll")
        parts.append(head)
    if not parts:
        return (f"No run of this chapter at another preset is kept in `scale/`; after one, "
                f"`python -m xferutils.claims keep results/{chapter}/<preset>.json` adds it here.")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferutils.claims",
                                     description="Compare the claim verdicts of two results files.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cmp_ = sub.add_parser("compare", help="list claims whose verdict differs between A and B")
    cmp_.add_argument("a")
    cmp_.add_argument("b")
    keep_ = sub.add_parser("keep", help="copy a results file's verdicts to scale/<chapter>/<preset>.json")
    keep_.add_argument("results")
    args = parser.parse_args(argv)
    if args.cmd == "keep":
        try:
            print("kept", keep(args.results).relative_to(SCALE_DIR.parent))
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    for p in (args.a, args.b):
        if not Path(p).is_file():
            print(f"error: results file {p} does not exist", file=sys.stderr)
            return 2
    a, b = load_claims(args.a), load_claims(args.b)
    diff = differences(a, b)
    print(f"{len(set(a) & set(b))} claims in both files; {len(diff)} differ")
    width = max([len(cid) for cid, _, _ in diff] + [5])
    for cid, va, vb in diff:
        print(f"  {cid:<{width}}  {va:>12} -> {vb}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
