"""Server-side defenses on the global adapter (the post-hoc safety fine-tune)."""

from fedtune.defenses.config import DefenseConfig
from fedtune.defenses.posthoc import PosthocDefense, PosthocParams

__all__ = ["DefenseConfig", "PosthocDefense", "PosthocParams"]
