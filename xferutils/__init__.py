"""xferutils: the helper package of the executable book on transfer learning.

One module per idea of the book: ``config`` (presets, validation, device), ``data`` (MNIST,
subsets, shifts), ``models`` (the seeds' networks), ``train`` (one network), ``ensemble``
(vectorized replicas), ``metrics``, ``plotting``, ``results``; chapters add their own.
"""
__version__ = "0.1.0"

from . import config, data, domain, ensemble, metrics, models, peft, plotting, results, train  # noqa: E402
from . import shared  # noqa: E402  (chapter 4)
from . import framework, numpynet  # noqa: E402  (chapter 2)
from . import strategies  # noqa: E402  (chapter 3)

show = plotting.show_source

__all__ = ["show", "config", "data", "domain", "ensemble", "metrics", "models", "peft", "plotting", "results", "train"]
