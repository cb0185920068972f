"""xferutils: the helper package of the executable book on transfer learning.

One module per idea of the book: ``config`` (presets, validation, device), ``data`` (MNIST,
subsets, shifts), ``models`` (the seeds' networks), ``train`` (one network), ``ensemble``
(vectorized replicas), ``metrics``, ``claims`` (verdicts on claims), ``plotting``, ``results``, ``timing``,
``progress``, ``peft`` (LoRA, adapters),
``domain`` (gradient reversal, DANN); and per chapter: ``framework`` and ``numpynet`` (chapter 2),
``strategies`` (chapter 3), ``shared_layers`` (chapter 4). ``bench`` is run as
``python -m xferutils.bench``.
"""
__version__ = "0.1.0"

from . import (claims, config, data, domain, ensemble, framework, metrics, models,  # noqa: E402
               numpynet, peft, plotting, progress, results, shared_layers, strategies, timing, train)

show = plotting.show_source

__all__ = ["claims", "config", "data", "domain", "ensemble", "framework", "metrics", "models", "numpynet",
           "peft", "plotting", "progress", "results", "shared_layers", "show", "strategies", "timing", "train"]
