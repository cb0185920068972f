"""The claims ledger: every claim of the five source documents, and what the book measured.

:data:`REGISTRY` transcribes each claim of ``seeds/000``–``004`` once: an id
``"<seed>-<slug>"`` (the id the chapters give the claim in their results files), the source
file, the claim quoted in short, and the chapter notebook that tests it, or ``untested`` with a
reason. A chapter that splits a claim into parts registers them as ``<id>-<part>`` (e.g.
``004-transfer-beats-scratch-fe``); they count for the entry when no claim has the exact id.
:func:`ledger` joins the registry with the ``claims`` lists of the chapters' results
files (``results/<chapter>/<preset>.json``, written by ``Run.save(results, claims=family)``) into
one row per claim; :func:`ledger_markdown` renders the back-matter page (``notebooks/ledger.ipynb``).
A missing results file or a claim a chapter did not register reads "not measured in this build".
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xferutils.core.config import PRESETS, ParameterError, check_choice
from xferutils.pages.claims import plural
from xferutils.pages.plotting import markdown_table

SOURCES = {"000": "000_9765192e53f531b1.txt", "001": "001_f47c1390b8f5a6a9.txt",
           "002": "002_866261dc4efdfeca.txt", "003": "003_b6577041b99a0d62.txt",
           "004": "004_cd97f5ca7886826e.txt"}
TITLES = {"000": "shared-layer transfer between two MNIST networks", "001": "fine-tuning strategies",
          "002": "a dense network and the mixture traversal to a sparse one",
          "003": "the mathematical framework of transfer learning",
          "004": "transfer strategies on a NumPy network"}
CHAPTERS = {"01_dense_baseline": "Chapter 1", "02_framework": "Chapter 2", "03_strategies": "Chapter 3",
            "04_shared_layers": "Chapter 4", "05_what_works": "Chapter 5", "06_mixture_traversal": "Chapter 6",
            "07_negative_results": "Chapter 7"}
NOT_MEASURED = "not measured in this build"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class Entry:
    """One claim of a source document: where it is tested, or why it is not."""

    id: str
    claim: str
    chapter: str | None = None
    untested: str = ""

    @property
    def seed(self) -> str:
        return self.id.split("-", 1)[0]

    @property
    def source(self) -> str:
        return SOURCES[self.seed]


def _e(id: str, claim: str, chapter: str | None = None, untested: str = "") -> Entry:
    return Entry(id, claim, chapter, untested)


CH1, CH2, CH3, CH4, CH5, CH6, CH7 = CHAPTERS

REGISTRY: tuple[Entry, ...] = (
    # --- seed 000: shared-layer transfer (chapter 4), its recommended solutions (chapter 5)
    _e("000-no-zero-shot", "simple shared layers cannot classify a digit Network 1 never saw", CH4),
    _e("000-bridging-94", "feature bridging reaches 94 % on the transfer digit", CH4),
    _e("000-bridging-isolation-0", "feature bridging: 0 % on untransferred classes (no contamination)", CH4),
    _e("000-bridging-94-at-90-retention", "bridging's 94 % together with the > 90 % retention criterion", CH4),
    _e("000-zero-information", "Network 1 has zero information about digit 3", CH4),
    _e("000-no-shared-fix", "meaningless features for digit 3: no shared-layer change can fix them", CH4),
    _e("000-frozen-no-alignment", "feature alignment: limited, frozen bases prevent alignment", CH4),
    _e("000-adversarial-limited", "adversarial alignment: better aligned, still limited", CH4),
    _e("000-contrastive-limited", "contrastive learning: limited transfer to unseen classes", CH4),
    _e("000-prototype-better", "prototypes: slightly better generalization, still limited", CH4),
    _e("000-memory-flexible", "memory-augmented shared layers: more flexible", CH4),
    _e("000-crit", "transfer > 80 %, retention > 90 %, untransferred < 10 %, faster than scratch",
       CH4),
    _e("000-partial-adaptation", "letting the final feature layer adapt fixes the bottleneck", CH5),
    _e("000-few-shot", "a few digit-3 samples: learning faster than from scratch", CH5),
    _e("000-distillation", "Network 2 as teacher: soft targets carry richer information", CH5),
    _e("000-meta-learning", "meta-learning makes networks transfer-ready", CH5),
    # --- seed 001: strategies (chapter 3), layer transfer (chapter 5), broken tables (chapter 7)
    _e("001-exp1-all-perfect", "experiment 1: every strategy at 1.00 for 50 to 1000 target samples", CH7),
    _e("001-exp1-scratch-needs-more", "from scratch needs much more data to match transfer", CH3),
    _e("001-exp2-chance", "experiment 2: 0.19-0.22 accuracy for every learning-rate multiplier", CH7),
    _e("001-exp2-smaller-rate", "use a smaller learning rate for pretrained layers", CH3),
    _e("001-exp3-chance", "experiment 3: transfer and scratch at 0.20-0.26 for every shift", CH7),
    _e("001-exp3-small-shift", "a small domain shift (0.5): transfer helps the most", CH3),
    _e("001-large-shift-no-gain", "a large shift (2.0+): the transfer benefit disappears", CH3),
    _e("001-negative-transfer", "very different domains: transfer may not help, or hurt", CH3),
    _e("001-decision-gradual-moderate", "moderate data: gradual unfreezing (prevents forgetting)", CH3),
    _e("001-early-layers-universal", "early layers are universal and transfer to almost any task", CH5),
    _e("001-later-layers-specific", "later layers are task-specific and need adaptation", CH5),
    _e("001-decision-fe-similar", "little data, similar domains: feature extraction (50-100 samples)", CH3),
    _e("001-decision-da-shift", "little data, different domains: domain adaptation", CH3),
    _e("001-decision-ft-lots", "lots of data (1000+): fine-tuning performs best", CH3),
    _e("001-transfer-first", "always try transfer first: it often beats training from scratch", CH3),
    # --- seed 002: the dense net (chapter 1), the mixture traversal (chapter 6)
    _e("002-dense-works", "the dense net worked great on the first draft (MNIST accuracy)", CH1),
    _e("002-sparse-from-prefit", "the sparse net: transfer from a prefit model recommended", CH6),
    _e("002-accuracy-sustained", "the traversal q: 0 -> 1 sustains accuracy onto the sparse model", CH6),
    _e("002-sparse-useful", "the sparse model reached by the traversal is useful (near the dense net)", CH6),
    _e("002-beats-other-traversals", "optimal retention beats other traversal strategies", CH6),
    _e("002-step-optimality", "each infinitesimal step along the path is optimal", None,
       "the theory behind 'optimal' is not stated in the document; no quantity to measure"),
    _e("002-arbitrary-models", "information can be translated optimally between arbitrary models", None,
       "a general statement about all model pairs; the book tests one pair (chapter 6)"),
    # --- seed 003: framework (chapter 2), strategies and DANN (chapter 3)
    _e("003-label-shift-keeps-px", "label shift: P(X) equal, P(Y|X) different (the document's table)", CH2),
    _e("003-ben-david", "target error <= source error + H-divergence + lambda", CH2),
    _e("003-lora-r16-0.1pct", "LoRA (r = 16) trains about 0.1 % of the parameters", CH2),
    _e("003-adapters-1-5pct", "adapters train about 1-5 % of the parameters", CH2),
    _e("003-prompt-tuning", "prompt tuning trains about 0.01 % of the parameters", None,
       "prompt tuning needs a token-input model; the book's networks are MLPs on pixels"),
    _e("003-fewer-data", "transfer dramatically reduces data requirements", CH3),
    _e("003-dann-invariant", "DANN learns domain-invariant features that help the target", CH3),
    _e("003-torchvision-backbones", "ResNet-50 / ViT-B/16 backbones as feature extractors", None,
       "needs ImageNet weights, which the offline build cannot download; chapter 3 counts parameters only"),
    # --- seed 004: framework and NumPy network (chapter 2), strategies (chapter 3)
    _e("004-transfer-beats-scratch", "all transfer strategies beat training from scratch on little data", CH2),
    _e("004-fe-converges-fast", "feature extraction converges fast and stably", CH2),
    _e("004-ft-highest", "full fine-tuning can reach the highest accuracy", CH2),
    _e("004-fe-best", "feature extraction is best when source and target are similar", CH2),
    _e("004-transfer-converges-faster", "transfer methods converge faster than from scratch", CH2),
    _e("004-backprop-correct", "the hand-written backpropagation computes the gradient", CH2),
    _e("004-l2sp-forgetting", "L2 toward the pretrained weights prevents forgetting and overfitting", CH3),
    _e("004-dft-beats-ft", "layer-wise rate decay balances adaptation and preservation", CH2),
    _e("004-small-data-freeze", "small target data: freeze more layers to prevent overfitting", CH3),
)


def check_registry(registry: Iterable[Entry] = REGISTRY) -> list[Entry]:
    """Every entry well-formed: a known seed, a unique id, a known chapter or a reason for none."""
    seen: set[str] = set()
    out = list(registry)
    for e in out:
        if e.seed not in SOURCES or not e.id[len(e.seed) + 1:]:
            raise ParameterError(f"claim id {e.id!r} must be '<seed>-<slug>' with a seed in {sorted(SOURCES)}")
        if e.id in seen:
            raise ParameterError(f"claim id {e.id!r} is registered twice")
        seen.add(e.id)
        if e.chapter is None and not e.untested.strip():
            raise ParameterError(f"claim {e.id!r} has no chapter and no reason why it is untested")
        if e.chapter is not None and e.chapter not in CHAPTERS:
            raise ParameterError(f"claim {e.id!r}: chapter={e.chapter!r}; choose one of {list(CHAPTERS)}")
    return out


def load_chapter_claims(preset: str, results_dir: str | Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{chapter: {claim id: verdict dict}}`` from every ``<chapter>/<preset>.json`` that exists.

    Only the standard ``claims`` list is read; an unreadable file counts as absent."""
    from xferutils.pages.results import results_dir as default_dir

    check_choice("preset", preset, PRESETS)
    root = Path(results_dir) if results_dir is not None else default_dir()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(root.glob(f"[0-9]*/{preset}.json")):
        try:
            claims = json.loads(path.read_text()).get("claims") or []
        except (OSError, ValueError, AttributeError):
            continue
        out[path.parent.name] = {c["id"]: c for c in claims if isinstance(c, dict) and "id" in c}
    return out


@dataclass(frozen=True)
class Row:
    """One line of the ledger: the registry entry and what the build measured for it."""

    entry: Entry
    chapter: str | None      # the chapter whose results carry the claim (None: not measured)
    verdict: dict[str, Any] | None
    parts: tuple[dict[str, Any], ...] = ()  # the claim's parts, when a chapter split it

    @property
    def status(self) -> str:
        if self.entry.chapter is None:
            return "untested"
        if self.verdict is None:
            return NOT_MEASURED
        if self.parts:
            tally: dict[str, int] = {}
            for p in self.parts:
                tally[p.get("verdict", "?")] = tally.get(p.get("verdict", "?"), 0) + 1
            return ", ".join(f"{k}: {v} of {len(self.parts)}" for k, v in sorted(tally.items()))
        return str(self.verdict.get("label") or self.verdict.get("verdict"))


def _matches(cid: str, claims: Mapping[str, Any], known: Iterable[str] = ()) -> list[str]:
    """The id itself if present, else its parts ``<id>-...`` (sorted) that belong to no longer
    registered id."""
    if cid in claims:
        return [cid]
    longer = [k for k in known if k.startswith(cid + "-")]
    return sorted(k for k in claims if k.startswith(cid + "-")
                  and not any(k == o or k.startswith(o + "-") for o in longer))


def ledger(claims: Mapping[str, Mapping[str, Mapping[str, Any]]],
           registry: Iterable[Entry] = REGISTRY) -> list[Row]:
    """Join the registry with the chapters' claims: the registered chapter first, then any other."""
    rows = []
    entries = check_registry(registry)
    known = [e.id for e in entries]
    for e in entries:
        found = None
        if e.chapter is not None:
            order = [e.chapter] + [c for c in claims if c != e.chapter]
            found = next(((c, _matches(e.id, claims[c], known)) for c in order
                          if _matches(e.id, claims.get(c, {}), known)), None)
        if found is None:
            rows.append(Row(e, None, None))
            continue
        ch, ids = found
        parts = tuple(dict(claims[ch][i]) for i in ids)
        rows.append(Row(e, ch, parts[0], parts if len(ids) > 1 else ()))  # one part: it is the claim
    return rows


def unregistered(claims: Mapping[str, Mapping[str, Any]], registry: Iterable[Entry] = REGISTRY) -> list[tuple[str, str]]:
    """(chapter, id) of claims with a seed id ("000-..." to "004-...") that the registry lacks."""
    known = [e.id for e in registry]
    return sorted((ch, cid) for ch, cs in claims.items() for cid in cs
                  if cid.split("-", 1)[0] in SOURCES and not any(cid == k or cid.startswith(k + "-") for k in known))


def _num(x: Any, unit: str = "") -> str:
    from xferutils.pages.claims import magnitude

    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return (("−" if x < 0 else "") + magnitude(x, unit.strip()) + unit) if isinstance(x, float) else f"{x}{unit}"


def measured_text(v: Mapping[str, Any]) -> str:
    """``0.942 (claimed 0.94)``, ``96.8 % vs 89.5 %`` or ``2.7 vs 4.1 points of gain``: the
    measured value beside what it is compared with. A comparison in points compares two
    accuracies: they read in %; any other unit is said once, after both."""
    unit = v.get("unit") or ""
    unit = "" if unit in ("", "fraction") else f" {unit}" if unit != "%" else " %"
    if v.get("kind") == "direction" and v.get("baseline") is not None:
        if unit == " points":
            return f"{_num(v.get('measured'), ' %')} vs {_num(v.get('baseline'), ' %')}"
        return f"{_num(v.get('measured'), unit).removesuffix(unit)} vs {_num(v.get('baseline'), unit)}"
    m = _num(v.get("measured"), unit)
    if v.get("claimed") is not None:
        c = _num(v.get("claimed"), unit)
        if m == c and isinstance(v.get("measured"), float) and v.get("measured") != v.get("claimed"):
            # one decimal would print the same number for two different values: show two
            m, c = (f"{x:.2f}".replace("-", "−") + unit for x in (v["measured"], float(v["claimed"])))
        return f"{m} (claimed {c})"
    return m


def interval_text(v: Mapping[str, Any]) -> str:
    """The unadjusted 95 % interval of the difference, ``[−0.4, +1.2]``, and for an undecided
    claim what the run could have detected; ``–`` when there is no interval."""
    from xferutils.pages.claims import NOT_SHOWN, magnitude, signed

    ci = v.get("interval") or v.get("ci") or [None, None]
    unit = v.get("unit") or ""
    if any(c is None or (isinstance(c, float) and not math.isfinite(c)) for c in ci):
        return "–"
    if v.get("zero_variance"):
        return "every seed identical"
    text = f"[{signed(ci[0], unit)},\u00a0{signed(ci[1], unit)}]"
    if v.get("verdict") == NOT_SHOWN and v.get("mde") is not None:
        text += f"; detectable ±{magnitude(v['mde'], unit)}"
    return text


def chapter_link(chapter: str) -> str:
    """A MyST link to a chapter page (the ledger notebook sits beside the chapters)."""
    name = CHAPTERS.get(chapter) or f"Chapter {chapter.split('_', 1)[0].lstrip('0')}"
    if not (NOTEBOOKS / f"{chapter}.ipynb").is_file():
        return name  # a chapter not (yet) in the book: no link, so the build has no dangling reference
    return f"{{doc}}`{name} <{chapter}>`"


def row_cells(row: Row) -> list[str]:
    """verdict, claim with its id, measured (seeds), 95 % interval of the difference, tested in.

    The verdict comes first and the id sits under the claim, so that five columns fit the page.
    """
    e, v = row.entry, row.verdict
    shown = (v or {}).get("id", e.id) if not row.parts else f"{e.id}-*"
    claim = f"{e.claim} <br>`{shown}`"
    if v is not None and not row.parts and v.get("text"):
        claim += f" <br>*decided by:* {v['text']}" + (f" (= `{v['mirror_of']}` read the other way)"
                                                      if v.get("mirror_of") else "")
    if e.chapter is None:
        return ["untested", f"{claim} <br>*why:* {e.untested}", "–", "–", "–"]
    where = chapter_link(row.chapter or e.chapter)
    if v is None:
        return [NOT_MEASURED, claim, "–", "–", where]
    if row.parts:
        return [row.status, claim, f"{len(row.parts)} parts ({plural(int(v.get('n', 0)), 'seed')})", "–", where]
    return [row.status, claim, f"{measured_text(v)} ({plural(int(v.get('n', 0)), 'seed')})", interval_text(v), where]


HEADER = ["verdict", "claim (in short)", "measured (seeds)", "95 % interval (unadjusted)", "tested in"]


def tally(rows: Iterable[Row]) -> dict[str, int]:
    """How many claims are supported, contradicted, not shown, not measured, untested."""
    out: dict[str, int] = {}
    for r in rows:
        key = r.verdict.get("verdict", r.status) if r.verdict and not r.parts else r.status
        key = "split into parts" if r.parts else key
        out[key] = out.get(key, 0) + 1
    return out


def ledger_markdown(preset: str, results_dir: str | Path | None = None) -> str:
    """The ledger page's body: a count line, then one table per source document."""
    claims = load_chapter_claims(preset, results_dir)
    rows = ledger(claims)
    n = tally(rows)
    parts = [", ".join(f"{k}: {v}" for k, v in sorted(n.items())) +
             f" ({len(rows)} claims; results of the `{preset}` build from {len(claims)} of "
             f"{len(CHAPTERS)} chapters)."]
    for seed, fname in SOURCES.items():
        body = [row_cells(r) for r in rows if r.entry.seed == seed]
        parts.append(f"### Document {seed}: {TITLES[seed]}\n\n" + markdown_table(HEADER, body))
    extra = unregistered(claims)
    if extra:
        parts.append("### Measured but not in the registry\n\n" +
                     "\n".join(f"- `{cid}` ({CHAPTERS.get(ch, ch)})" for ch, cid in extra))
    return "\n\n".join(parts)


def registry_table(registry: Iterable[Entry] = REGISTRY) -> str:
    """The registry alone (id, source, claim, tested by / untested reason) as markdown."""
    rows = [[f"`{e.id}`", f"seed {e.seed}", e.claim, CHAPTERS[e.chapter] if e.chapter else f"untested: {e.untested}"]
            for e in check_registry(registry)]
    return markdown_table(["id", "source", "claim (in short)", "tested by"], rows)
