"""One module per chapter: what only that chapter runs, and the builders of its tables, figures
and words. A chapter imports the core and the pages, never another chapter.

1 ``dense_baseline`` · 2 ``framework`` and ``numpy_strategies`` (document 004's experiment) · 3 ``strategies`` · 4 ``shared_layers`` ·
5 ``what_works`` (``distillation``, ``fewshot``, ``freezing``) · 6 ``traversal`` ·
7 ``negative_results``
"""
from . import (dense_baseline, framework, negative_results, numpy_strategies, shared_layers,  # noqa: F401
               strategies, traversal, what_works)
