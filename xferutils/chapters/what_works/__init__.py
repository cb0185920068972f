"""Chapter 5, what works instead: ``distillation`` (Hinton et al.'s teacher and students),
``fewshot`` (prototypes, few-shot fine-tuning, bridging with few labels) and ``freezing``
(Yosinski et al.'s layer test, partial unfreezing)."""
from . import distillation, fewshot, freezing  # noqa: F401
