"""Diversity of generated text against its seeds (how MATRIX-Gen-style data is compared with the
data it grew from): distinct-n (Li et al. 2016: unique n-grams / all n-grams, here over
lowercased whitespace tokens, pooled over the texts) and the embedding spread (mean pairwise
cosine distance of mean-pooled last hidden states, via ``u2s.embedding_similarity``)."""

from __future__ import annotations

from fedtune.synth.u2s import embedding_similarity


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams / total n-grams over all texts (0.0 when there is no n-gram)."""
    if n < 1:
        raise ValueError(f"distinct_n: n must be >= 1, got {n}")
    grams = [tuple(tokens[i:i + n]) for t in texts for tokens in [t.lower().split()]
             for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def embedding_spread(texts: list[str], model, tokenizer) -> float:
    """Mean cosine distance (1 - cosine) over the distinct pairs of texts (0.0 for fewer than 2)."""
    if len(texts) < 2:
        return 0.0
    sim = embedding_similarity(texts, texts, model, tokenizer)
    k = len(texts)
    return float(sum(1 - sim[i, j] for i in range(k) for j in range(i + 1, k)) / (k * (k - 1) / 2))


def diversity_report(generated: list[str], seeds: list[str], model=None, tokenizer=None) -> dict:
    """distinct-1/2 of both sets, and their embedding spread when a model is given."""
    report = {}
    for name, texts in (("generated", generated), ("seeds", seeds)):
        report[name] = {"count": len(texts), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}
        if model is not None:
            report[name]["embedding_spread"] = embedding_spread(texts, model, tokenizer)
    return report
