"""``fedtune data inspect`` and ``fedtune data split``: build a config's federated data without
training, show what each client holds, or write the partition as one file per party."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedtune.cache import cache_root
from fedtune.config import RunConfig
from fedtune.data.chat_templates import apply_template
from fedtune.data.federated import FederatedData, step_totals
from fedtune.data.inspection import client_stats, plot_heatmap, plot_token_histogram
from fedtune.data.ops.pipeline import needs_model
from fedtune.data.split_files import write_split
from fedtune.engine.workspace import build_data
from fedtune.models.loader import load_base, load_tokenizer
from fedtune.schema import ConfigError

MAX_ROWS = 40


def load_data(cfg: RunConfig, transcripts: Path | None = None) -> tuple[FederatedData, object]:
    """The config's federated data and the tokenizer (the model only if an op or synthesis needs it)."""
    if needs_model(cfg.data.pipeline) or cfg.synth is not None:  # synthesis generates with the model
        loaded = load_base(cfg.model)
        tokenizer = loaded.tokenizer
    else:
        loaded, tokenizer = None, load_tokenizer(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    apply_template(tokenizer, cfg.data.template)
    return build_data(cfg, loaded, cache_root(), transcripts), tokenizer


def _dropped_by_step(data: FederatedData) -> dict[str, int]:
    return {step: t["dropped"] for step, t in step_totals(data.report.get("steps", [])).items() if t["dropped"]}


def inspect_data(cfg: RunConfig, out_dir: Path, console: Console) -> dict:
    data, tokenizer = load_data(cfg)
    stats = client_stats(data, tokenizer, cfg.data.system_prompt, cache_root() / "tokens")
    table = Table(title=f"{cfg.data.source or 'built-in suite'}: {data.num_clients} clients, {data.kind} records")
    for col in ("client", "train", "test", "dropped", "duplicates", "tokens p50", "p90", "max", "top categories"):
        table.add_column(col, justify="left" if col in ("client", "top categories") else "right")
    for s in stats[:MAX_ROWS]:
        top = ", ".join(f"{c} {n}" for c, n in s.categories.most_common(3))
        table.add_row(s.name, str(s.train), str(s.test), str(s.dropped), str(s.duplicates), str(s.percentile(50)),
                      str(s.percentile(90)), str(max(s.tokens, default=0)), top)
    if len(stats) > MAX_ROWS:
        table.add_row(f"… {len(stats) - MAX_ROWS} more", "", "", "", "", "", "", "", "")
    console.print(table)
    all_tokens = [n for s in stats for n in s.tokens]
    over = sum(n > cfg.data.max_length for n in all_tokens)
    console.print(f"records: {sum(s.train for s in stats)} train, {sum(s.test for s in stats)} client test, "
                  f"{len(data.global_test)} global test; {over} longer than max_length {cfg.data.max_length} "
                  "(truncated at training)")
    dropped = _dropped_by_step(data)
    console.print("dropped: " + (", ".join(f"{k} {v}" for k, v in dropped.items()) or "none"))
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_heatmap(stats, out_dir / "categories.png"),
             plot_token_histogram(stats, cfg.data.max_length, out_dir / "token_lengths.png")]
    console.print("plots: " + "  ".join(str(p) for p in plots))
    return {"clients": len(stats), "dropped": dropped, "plots": [str(p) for p in plots]}


def split_data(cfg: RunConfig, out_dir: Path, console: Console) -> dict:
    data, _ = load_data(cfg)
    manifest = write_split(data, out_dir)
    console.print(f"wrote {data.num_clients} clients' train/test files and global_test.jsonl to {out_dir} "
                  f"(manifest.json lists them); dropped: {_dropped_by_step(data) or 'none'}")
    return manifest


def synth_data(cfg: RunConfig, method: str, out_dir: Path, console: Console) -> dict:
    """``fedtune synth METHOD``: synthesize every client's data as a run would (cached, so the run
    that follows regenerates nothing) and write it one file per client, for a party to inspect."""
    if cfg.synth is None or cfg.synth.method != method:
        raise ConfigError(f"synth: the config has no `synth: {{method: {method}, ...}}` section "
                          f"(found {cfg.synth.method if cfg.synth else 'none'})")
    data, _ = load_data(cfg, out_dir / "transcripts")
    manifest = write_split(data, out_dir)
    table = Table(title=f"synth {method}: per client")
    for col in ("client", "generated", "kept", "dropped (why)"):
        table.add_column(col)
    for c in data.clients:
        rows = [r for r in data.report.get("steps", []) if r["client"] == c.name and r["step"].startswith("synth.")]
        total = next((r for r in rows if r["step"] == f"synth.{method}"), {})
        why = ", ".join(f"{r['step'].rsplit('.', 1)[1]} {r['dropped']}" for r in rows if r["step"] != f"synth.{method}")
        table.add_row(c.name, str(total.get("generated", 0)), str(total.get("kept", 0)), why or "—")
    console.print(table)
    console.print(f"wrote {data.num_clients} clients' train/test files to {out_dir}; each synthesized record "
                  "carries `synth`: what it was made from (source text, raw generation, demonstrations, or the "
                  "simulation and its critiques)")
    if (out_dir / "transcripts").is_dir():
        console.print(f"every model call of the simulations: {out_dir / 'transcripts'}/<client>.jsonl")
    return manifest
