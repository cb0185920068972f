"""xferutils: the helper package of the executable book on transfer learning.

Three layers, each a subpackage:

- ``core``: what trains and measures networks, independent of any page — ``config`` (presets,
  parameter checks, device), ``data`` (MNIST, subsets, shifts), ``models``, ``train`` (one
  network, the readable reference trainer), ``ensemble`` (seeds as vectorized replicas: the
  book's trainer), ``step`` and ``optim`` (its fused / CUDA-graph step and its one Adam),
  ``store`` and ``references`` (trained networks kept by configuration and seed, and the ones
  several chapters start from), ``finetune`` (per-layer learning-rate multipliers),
  ``peft`` (LoRA, adapters), ``domain`` (gradient reversal, DANN), ``sharing`` (shared layers
  between two networks), ``sparse`` and ``mixture`` (k-WTA and the dense/sparse mixture),
  ``numpynet`` (document 004's NumPy network, chapters 2 and 7), ``baselines`` (pixel, random-network and
  prototype baselines) and ``metrics``.
- ``pages``: what turns results into pages — ``claims`` (questions, verdicts and their words),
  ``ledger`` (every source claim and its verdict), ``results`` (results files and glue),
  ``plotting`` and ``timing``.
- ``chapters``: one module per chapter, named for its idea, holding what only that chapter
  runs and the builders of its tables, figures and words: ``dense_baseline`` (1), ``framework``
  and ``numpy_strategies`` (2), ``strategies`` (3), ``shared_layers`` (4), ``what_works`` (5: ``distillation``,
  ``fewshot``, ``freezing``), ``traversal`` (6), ``negative_results`` (7). Chapters import the
  core and the pages, never each other.

Commands (top level): ``python -m xferutils.build`` (the book), ``python -m xferutils.bench``,
``python -m xferutils.claims compare``, ``python -m xferutils.student``,
``python -m xferutils.sweep``, ``python -m xferutils.gpucheck``.

The core and page modules are also reachable flat (``xu.data``, ``xu.claims``), as the pages
use them; chapters as ``xu.chapters.<name>``.
"""
__version__ = "0.1.0"

from . import chapters, core, pages  # noqa: E402
from .core import (baselines, config, data, domain, ensemble, finetune, metrics, mixture,  # noqa: E402
                   models, numpynet, optim, peft, references, sharing, sparse, step, store, train)
from .pages import claims, ledger, plotting, results, timing  # noqa: E402

show = plotting.show_source

__all__ = ["baselines", "chapters", "claims", "config", "core", "data", "domain", "ensemble", "finetune",
           "ledger", "metrics", "mixture", "models", "numpynet", "optim", "pages", "peft", "plotting",
           "references", "results", "sharing", "show", "sparse", "step", "store", "timing", "train"]
