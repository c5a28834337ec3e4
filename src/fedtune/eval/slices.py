"""The built-in suite's two slices: exact match averaged over the fact categories (``fact:*``,
memorized by recall) and over the skill rules (``rule:*``, generalized to held-out words).

The demo's table and the benchmark tables over seeds report both, so they are defined once here.
"""

from __future__ import annotations

SLICES = {"facts": "fact:", "skills": "rule:"}


def slice_means(by_category: dict[str, float]) -> dict[str, float | None]:
    """{"facts": mean over fact categories, "skills": mean over rules} (None where a slice has none)."""
    means = {}
    for name, prefix in SLICES.items():
        scores = [v for k, v in by_category.items() if k.startswith(prefix)]
        means[name] = sum(scores) / len(scores) if scores else None
    return means
