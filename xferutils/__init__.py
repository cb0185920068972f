"""xferutils: the helper package of the executable book on transfer learning.

One module per idea of the book.

- Core: ``config`` (presets, validation, device), ``data`` (MNIST, subsets, shifts), ``models``
  (the seeds' networks), ``train`` (one network, the readable reference trainer), ``ensemble``
  (vectorized replicas), ``store`` (trained networks kept by configuration and seed),
  ``references`` (networks several chapters start from) and ``step`` (its fused / CUDA-graph step), ``metrics``, ``claims``
  (verdicts on claims), ``plotting``, ``results``, ``timing``;
  long loops show their progress with ``tqdm.auto``.
- Ideas: ``peft`` (LoRA, adapters), ``domain`` (gradient reversal, DANN and its λ schedule).
- Per chapter: ``baseline`` (1), ``framework`` and ``numpynet`` (2), ``strategies`` (3),
  ``baselines`` (the pixel, random-network and prototype baselines of 2 and 3),
  ``shared_layers`` (4), ``distill``, ``fewshot`` and ``layers`` (5), ``sparse``, ``mixture`` and
  ``traversal`` (6), ``negative`` (7); ``ledger`` (the claims ledger).
- Commands: ``python -m xferutils.build`` (the book), ``python -m xferutils.bench``,
  ``python -m xferutils.claims compare``,
  ``python -m xferutils.student``, ``python -m xferutils.gpucheck``.
"""
__version__ = "0.1.0"

from . import (baseline, baselines, claims, config, data, distill, domain, ensemble, fewshot,  # noqa: E402
               framework, layers, ledger, metrics, mixture, models, negative, numpynet, peft,
               plotting, references, results, shared_layers, sparse, store, strategies, timing,
               train, traversal)

show = plotting.show_source

__all__ = ["baseline", "baselines", "claims", "config", "data", "distill", "domain", "ensemble", "fewshot",
           "framework", "layers", "ledger", "metrics", "mixture", "models", "negative", "numpynet",
           "peft", "plotting", "references", "results", "shared_layers", "show", "sparse",
           "store", "strategies", "timing", "train", "traversal"]
