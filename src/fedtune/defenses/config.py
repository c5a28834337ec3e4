"""The ``defense`` config section: server-side defenses applied to the global adapter."""

from __future__ import annotations

from fedtune.defenses.posthoc import PosthocParams
from fedtune.schema import Section


class DefenseConfig(Section):
    # The post-hoc safety defense (Ye et al., ICLR 2025): {steps, every, level, ...}; null = off.
    posthoc: PosthocParams | None = None
