"""xferutils: the helper package of the executable book on transfer learning.

One module per idea of the book: ``config`` (presets, validation, device), ``data`` (MNIST,
subsets, shifts), ``models`` (the seeds' networks), ``train`` (one network), ``ensemble``
(vectorized replicas), ``metrics``, ``plotting``, ``results``, ``peft`` (LoRA, adapters),
``domain`` (gradient reversal); and per chapter: ``framework`` and ``numpynet`` (chapter 2),
``strategies`` (chapter 3), ``shared`` (chapter 4). ``bench`` is run as
``python -m xferutils.bench``.
"""
__version__ = "0.1.0"

from . import (config, data, domain, ensemble, framework, metrics, models, numpynet,  # noqa: E402
               peft, plotting, results, shared, strategies, train)

show = plotting.show_source

__all__ = ["config", "data", "domain", "ensemble", "framework", "metrics", "models", "numpynet",
           "peft", "plotting", "results", "shared", "show", "strategies", "train"]
