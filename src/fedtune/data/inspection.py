"""What each client holds: counts, token lengths, category mix, duplicates, what processing dropped;
plus two plots (client × category heatmap, token-length histogram). Behind ``fedtune data inspect``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtune.data.federated import FederatedData
from fedtune.data.ops.dedup import duplicate_count
from fedtune.data.tokenize import as_sft, tokenize_sft_cached

MAX_HEATMAP_CLIENTS = 60
MAX_HEATMAP_CATEGORIES = 30


@dataclass
class ClientStats:
    name: str
    train: int
    test: int
    dropped: int  # by the processing pipeline
    duplicates: int  # exact duplicates still in the training data
    tokens: list[int]  # token length of every training record (chat template applied)
    categories: Counter

    def percentile(self, q: float) -> int:
        return int(np.percentile(self.tokens, q)) if self.tokens else 0


def client_stats(data: FederatedData, tokenizer, system_prompt: str | None,
                 cache_dir: Path | None = None) -> list[ClientStats]:
    dropped = Counter()
    for row in data.report.get("steps", []):
        dropped[row["client"]] += row.get("dropped", 0)
    out = []
    for c in data.clients:
        sft = [as_sft(r) if "prompt" in r else r for r in c.train]
        # untruncated lengths: inspection is where users decide max_length
        tokens = tokenize_sft_cached(sft, tokenizer, 10**9, system_prompt, cache_dir).lengths()
        out.append(ClientStats(c.name, len(c.train), len(c.test), dropped[c.name], duplicate_count(c.train),
                               tokens, Counter(r.get("category", "") or "(none)" for r in c.train)))
    return out


def plot_heatmap(stats: list[ClientStats], path: Path) -> Path:
    """Share of each client's training records per category (the non-IID picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = stats[:MAX_HEATMAP_CLIENTS]
    totals = Counter()
    for s in stats:
        totals.update(s.categories)
    cats = [c for c, _ in totals.most_common(MAX_HEATMAP_CATEGORIES)]
    grid = np.array([[s.categories.get(c, 0) / max(1, s.train) for c in cats] for s in shown])
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(cats) + 2), max(3, 0.28 * len(shown) + 1.5)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(cats)), cats, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(shown)), [s.name for s in shown], fontsize=7)
    more = f" (first {len(shown)} of {len(stats)} clients)" if len(stats) > len(shown) else ""
    ax.set_title(f"category share per client{more}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_token_histogram(stats: list[ClientStats], max_length: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [n for s in stats for n in s.tokens]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(lengths, bins=50, color="#4c72b0")
    ax.axvline(max_length, color="#c44e52", linestyle="--", label=f"data.max_length = {max_length}")
    over = sum(n > max_length for n in lengths)
    ax.set_title(f"tokens per training record ({over} of {len(lengths)} longer than max_length)", fontsize=9)
    ax.set_xlabel("tokens (chat template applied)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
