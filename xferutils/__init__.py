"""xferutils: the helper package of the executable book on transfer learning.

One module per idea of the book.

- Core: ``config`` (presets, validation, device), ``data`` (MNIST, subsets, shifts), ``models``
  (the seeds' networks), ``train`` (one network, the readable reference trainer), ``ensemble``
  (vectorized replicas) and ``step`` (its fused / CUDA-graph step), ``metrics``, ``claims``
  (verdicts on claims), ``plotting``, ``results``, ``timing``, ``progress``.
- Ideas: ``peft`` (LoRA, adapters), ``domain`` (gradient reversal, DANN).
- Per chapter: ``baseline`` (1), ``framework`` and ``numpynet`` (2), ``strategies`` (3),
  ``shared_layers`` (4), ``negative`` (7); ``ledger`` (the claims ledger).
- Commands: ``python -m xferutils.bench``, ``python -m xferutils.claims compare``,
  ``python -m xferutils.student``, ``python -m xferutils.gpucheck``.
"""
__version__ = "0.1.0"

from . import (baseline, claims, config, data, domain, ensemble, framework, ledger,  # noqa: E402
               metrics, models, negative, numpynet, peft, plotting, progress, results,
               shared_layers, strategies, timing, train)

show = plotting.show_source

__all__ = ["baseline", "claims", "config", "data", "domain", "ensemble", "framework", "ledger",
           "metrics", "models", "negative", "numpynet", "peft", "plotting", "progress", "results",
           "shared_layers", "show", "strategies", "timing", "train"]
