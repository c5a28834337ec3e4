"""The report's collaboration section for decentralized runs: the graph of every round as a
heatmap (row i = the weights client i gave each client when mixing) and who learned from whom.

The graphs come from metrics.jsonl (``aggregation.graph`` of each round, written by the Gossip
strategy), so a finished run and one still in progress draw the same way."""

from __future__ import annotations

from fedtune.report.plots import plt, png_of
from fedtune.report.units import img, table

MAX_PANELS = 8  # heatmaps drawn: the first and last round and evenly spaced ones between


def graphs_of(rows: list[dict]) -> list[tuple[int, dict]]:
    """(round, graph) for every round that recorded one."""
    return [(r["round"], r["aggregation"]["graph"]) for r in rows if "graph" in (r.get("aggregation") or {})]


def _panels(graphs: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    if len(graphs) <= MAX_PANELS:
        return graphs
    picks = sorted({round(i * (len(graphs) - 1) / (MAX_PANELS - 1)) for i in range(MAX_PANELS)})
    return [graphs[i] for i in picks]


def heatmaps(graphs: list[tuple[int, dict]]) -> bytes | None:
    """One heatmap per shown round, on a shared 0..1 colour scale."""
    if not graphs:
        return None
    panels = _panels(graphs)
    cols = min(4, len(panels))
    grid_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(2.3 * cols + 1, 2.4 * grid_rows + 0.4), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (rnd, g) in zip(axes.flat, panels):
        image = ax.imshow(g["weights"], vmin=0, vmax=1, cmap="magma")
        ticks = range(len(g["clients"]))
        ax.set_xticks(ticks, [str(c) for c in g["clients"]], fontsize=6)
        ax.set_yticks(ticks, [str(c) for c in g["clients"]], fontsize=6)
        ax.set_title(f"round {rnd}", fontsize=8)
    for row in axes:
        row[0].set(ylabel="client (mixes)")
    fig.colorbar(image, ax=axes.ravel().tolist(), label="weight", shrink=0.8)
    fig.suptitle(f"Collaboration graph ({graphs[-1][1].get('kind', '')}): column = whose adapter", fontsize=9)
    return png_of(fig, tight=False)


def learned_from(graphs: list[tuple[int, dict]], top: int = 3) -> list[list]:
    """Per client: the weight it kept for itself and the neighbours it took most from, averaged
    over all recorded rounds (clients absent from a round count zero there)."""
    totals: dict[int, dict[int, float]] = {}
    for _, g in graphs:
        for i, row in zip(g["clients"], g["weights"]):
            for j, w in zip(g["clients"], row):
                totals.setdefault(i, {}).setdefault(j, 0.0)
                totals[i][j] += w / len(graphs)
    out = []
    for i in sorted(totals):
        others = sorted(((-w, j) for j, w in totals[i].items() if j != i and w > 0))[:top]  # ties: lower id first
        out.append([i, f"{totals[i].get(i, 0.0):.2f}", ", ".join(f"{j} ({-w:.2f})" for w, j in others) or "none"])
    return out


def collaboration_section(rows: list[dict]) -> str:
    """The section's HTML, empty for runs without a collaboration graph."""
    graphs = graphs_of(rows)
    if not graphs:
        return ""
    return ("<h2>Collaboration graph</h2>"
            f"<p>Each client's mixing weights, round by round ({len(graphs)} rounds recorded); "
            "the table averages them over rounds.</p>"
            + img(heatmaps(graphs), "collaboration graph per round")
            + table(["client", "kept for itself", "learned most from (mean weight)"], learned_from(graphs)))
