"""Matplotlib figures of a run's metrics, returned as PNG bytes (Agg backend, no display).

A per-round figure needs at least two rounds to be drawn (None otherwise): a one-point line says
nothing a table does not, and the report's tables show every value."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _rounds(points) -> int:
    """How many distinct rounds (x values) ``points`` covers."""
    return len({x for x, *_ in points})


def png_of(fig, tight: bool = True) -> bytes:
    """``fig`` as PNG bytes (closed afterwards); ``tight=False`` for figures with a shared colour bar."""
    buf = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def train_loss(rows: list[dict]) -> bytes | None:
    """Mean train loss per round, with each client's loss as dots."""
    pts = [(r["round"], float(m["loss"])) for r in rows for m in r.get("train", {}).values() if "loss" in m]
    means = [(r["round"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    if _rounds(means) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if pts:
        ax.scatter(*zip(*pts), s=10, alpha=0.4, label="clients")
    ax.plot(*zip(*means), marker="o", color="C1", label="mean")
    ax.set(xlabel="round", ylabel="train loss", title="Local training loss")
    ax.legend()
    return png_of(fig)


def eval_metric(rows: list[dict], metric: str, title: str) -> bytes | None:
    """A global eval metric per round, plus one line per client when per-client eval exists."""
    evals = [(r["round"], r["eval"]) for r in rows if "eval" in r]
    glob = [(rnd, e["global"][metric]) for rnd, e in evals if metric in e.get("global", {})]
    if _rounds(glob) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    clients = sorted({c for _, e in evals for c, m in e.get("clients", {}).items() if metric in m},
                     key=lambda c: int(c) if c.isdigit() else c)
    for c in clients:
        pts = [(rnd, e["clients"][c][metric]) for rnd, e in evals if metric in e.get("clients", {}).get(c, {})]
        ax.plot(*zip(*pts), lw=1, alpha=0.5, marker="." if len(pts) == 1 else None, label=f"client {c}")
    ax.plot(*zip(*glob), marker="o", lw=2, color="black", label="global test")
    ax.set(xlabel="round", ylabel=metric.replace("_", " "), title=title)
    if len(clients) <= 10:
        ax.legend(fontsize=7)
    return png_of(fig)


def safety(rows: list[dict]) -> bytes | None:
    """Harmless rate beside helpfulness per round (the safety attack/defense trade-off), with the
    rounds after which the server's post-hoc defense ran marked."""
    evals = [(r["round"], r["eval"]["global"]) for r in rows if "eval" in r]
    lines = {"harmless rate (refusal keywords)": "harmless_rate", "LLM judge safe rate": "llm_judge_safe_rate",
             "classifier judge safe rate": "judge_safe_rate", "helpful exact match": "helpful_exact_match"}
    curves = {label: [(rnd, g[k]) for rnd, g in evals if g.get(k) is not None] for label, k in lines.items()}
    if _rounds(curves["harmless rate (refusal keywords)"]) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, pts in curves.items():
        if pts:
            ax.plot(*zip(*pts), marker="o", lw=1.5, label=label)
    for r in rows:
        if "defense" in r:
            ax.axvline(r["round"], ls="--", lw=1, color="grey")
    ax.set(xlabel="round (dashed: post-hoc defense ran)", ylabel="share", ylim=(-0.02, 1.02), title="Safety and helpfulness")
    ax.legend(fontsize=7)
    return png_of(fig)


def communication(rows: list[dict]) -> bytes | None:
    """Cumulative MB uploaded and downloaded per round."""
    if _rounds([(r["round"],) for r in rows]) < 2:
        return None
    rounds = [r["round"] for r in rows]
    up, down, total_up, total_down = [], [], 0.0, 0.0
    for r in rows:
        total_up += r.get("bytes_up", 0) / 1e6
        total_down += r.get("bytes_down", 0) / 1e6
        up.append(total_up)
        down.append(total_down)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(rounds, up, marker=".", label="uploaded (clients → server)")
    ax.plot(rounds, down, marker=".", label="downloaded (server → clients)")
    ax.set(xlabel="round", ylabel="cumulative MB", title="Communication")
    ax.legend()
    return png_of(fig)


def extra_train_metrics(rows: list[dict]) -> dict[str, bytes]:
    """One plot per additional numeric per-client train metric (e.g. reward accuracy for DPO)."""
    skip = {"loss", "steps", "examples", "tokens", "seconds", "seconds_compute"}
    names = sorted({k for r in rows for m in r.get("train", {}).values() for k, v in m.items()
                    if k not in skip and isinstance(v, (int, float))})
    out = {}
    for name in names:
        pts = [(r["round"], m[name]) for r in rows for m in r.get("train", {}).values() if name in m]
        if _rounds(pts) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.4))
        ax.scatter(*zip(*pts), s=10)
        ax.set(xlabel="round", ylabel=name, title=f"Client {name.replace('_', ' ')}")
        out[name] = png_of(fig)
    return out


def attack_harm(rows: list[dict]) -> bytes | None:
    """Per round, under simulated attackers: how far the global update went from the benign
    clients' mean (and that mean's own size), with the aggregation rule of each round."""
    pts = [(r["round"], r["attack"]) for r in rows if "distance_from_benign_mean" in r.get("attack", {})]
    if _rounds(pts) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([p for p, _ in pts], [a["distance_from_benign_mean"] for _, a in pts], marker="o", label="‖update − benign mean‖")
    ax.plot([p for p, _ in pts], [a["benign_mean_norm"] for _, a in pts], ls="--", label="‖benign mean‖")
    rules = {r["round"]: r.get("aggregation", {}).get("rule") for r in rows}
    for rnd, a in pts:
        if rules.get(rnd):
            ax.annotate(rules[rnd], (rnd, a["distance_from_benign_mean"]), fontsize=7, rotation=30)
    ax.set(xlabel="round", ylabel="L2 distance", title=f"Harm of the attack (attackers {pts[0][1]['clients']})")
    ax.legend(fontsize=7)
    return png_of(fig)


def privacy(rows: list[dict]) -> bytes | None:
    """ε spent after each round: client-level DP's, and each client's DP-SGD ε (sample level)."""
    client = [(r["round"], r["privacy"]["client_level"]["epsilon"]) for r in rows if "client_level" in r.get("privacy", {})]
    sample = [(r["round"], e) for r in rows for e in r.get("privacy", {}).get("sample_level", {}).get("epsilon", {}).values()]
    if max(_rounds(client), _rounds(sample)) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if client:
        ax.plot(*zip(*client), marker="o", label="client level (DP-FedAvg)")
    if sample:
        ax.scatter(*zip(*sample), s=12, color="tab:orange", label="sample level (DP-SGD), per client")
    ax.set(xlabel="round", ylabel="ε", title="Privacy spent (ε at the run's δ)")
    ax.legend(fontsize=7)
    return png_of(fig)


def quality_scores(scores: dict[str, list[float]]) -> bytes | None:
    """Histogram of each client's latest data-quality scores (FedDQC's IRA, or a baseline's)."""
    scores = {c: [v for v in s if math.isfinite(v)] for c, s in scores.items()}
    scores = {c: s for c, s in scores.items() if s}
    if not scores:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, (client, values) in enumerate(list(scores.items())[:10]):
        ax.hist(values, bins=20, histtype="step", color=f"C{i}", label=f"client {client}")
    ax.set(xlabel="score (higher: kept first)", ylabel="examples", title="Data-quality scores per client")
    ax.legend(fontsize=7)
    return png_of(fig)


def quality_noisy_vs_clean(scores: dict[str, list[float]], noisy: dict[str, list[int]]) -> bytes | None:
    """Histogram of the quality scores of the corrupted examples against the clean ones, over the
    clients with known noise (the built-in suite's ``noise_rate``): what a good score separates."""
    bad, good = [], []
    for client, values in scores.items():
        corrupted = set(noisy.get(client, ()))
        if not corrupted:
            continue
        for i, v in enumerate(values):
            if math.isfinite(v):
                (bad if i in corrupted else good).append(v)
    if not bad or not good:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(good, bins=20, alpha=0.6, color="tab:green", label=f"clean ({len(good)})")
    ax.hist(bad, bins=20, alpha=0.6, color="tab:red", label=f"corrupted ({len(bad)})")
    ax.set(xlabel="score (higher: kept first)", ylabel="examples",
           title="Quality scores: corrupted vs clean examples (noisy clients)")
    ax.legend(fontsize=7)
    return png_of(fig)


def selected_layers(rows: list[dict]) -> bytes | None:
    """How many sampled clients trained each transformer layer, round by round (selective layers)."""
    picks = [(r["round"], [l for v in r["selective"]["layers"].values() for l in v]) for r in rows if "selective" in r]
    if _rounds(picks) < 2:
        return None
    layers = sorted({l for _, ls in picks for l in ls})
    grid = [[ls.count(layer) for _, ls in picks] for layer in layers]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    image = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis",
                      extent=(picks[0][0] - 0.5, picks[-1][0] + 0.5, -0.5, len(layers) - 0.5))
    ax.set_yticks(range(len(layers)), [str(l) for l in layers], fontsize=6)
    ax.set(xlabel="round", ylabel="layer", title="Clients training each layer (selective layers)")
    fig.colorbar(image, ax=ax, label="clients")
    return png_of(fig)


def run_curves(series: dict[str, list[tuple[int, float]]], ylabel: str, title: str) -> bytes | None:
    """One quantity per round, one line per run on the same axes (a run with a single point is a
    marker); None unless some run has two rounds of it."""
    series = {k: v for k, v in series.items() if v}
    if not series or max(_rounds(v) for v in series.values()) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, (label, pts) in enumerate(series.items()):
        ax.plot(*zip(*pts), marker="o" if len(pts) == 1 else ".", lw=1, color=f"C{i % 10}",
                ls="-" if i < 10 else "--", label=label)
    ax.set(xlabel="round", ylabel=ylabel, title=title)
    if len(series) <= 20:
        ax.legend(fontsize=6, ncol=2)
    return png_of(fig)


def bytes_tradeoff(points: dict[str, tuple[float, float]], title: str) -> bytes | None:
    """Exact match against MB sent over the run, one point per run; None unless the runs differ
    in what they sent (a comparison of compression schemes, of budgets, ...)."""
    if len({mb for mb, _ in points.values()}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (label, (mb, em)) in enumerate(points.items()):
        ax.scatter([mb], [em], color=f"C{i % 10}")
        ax.annotate(label, (mb, em), fontsize=7, rotation=20)
    ax.set(xscale="log", xlabel="MB sent over the run (log)", ylabel="exact match %", title=title)
    return png_of(fig)


def comparison_bar(labels: list[str], values: list[float], title: str, ylabel: str = "exact match %") -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bars = ax.bar(labels, values, color=[f"C{i}" for i in range(len(labels))])
    ax.bar_label(bars, fmt="%.1f")
    ax.set(ylabel=ylabel, title=title)
    return png_of(fig)
