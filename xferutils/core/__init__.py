"""The core: data, networks, the one trainer and the methods every chapter builds on.

Nothing here imports a chapter (:mod:`xferutils.chapters`)."""
