"""A node's local training data: its own data file, or its partition of the run's data.

With the suite, the partition is built exactly as the embedded engine builds it (same config,
same seed), so the same client trains on the same examples on every engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fedtune.cache import cache_root
from fedtune.client.trainer import LocalData
from fedtune.config import RunConfig
from fedtune.data.build import read_records, synthesized
from fedtune.data.chat_templates import apply_template
from fedtune.data.ops.difficulty import scoring_context
from fedtune.data.ops.pipeline import run_pipeline
from fedtune.data.task_stream import task_stream
from fedtune.data.tokenize import tokenize_train
from fedtune.flower.node_config import NodeConfigError, NodeSettings
from fedtune.models.loader import LoadedModel
from fedtune.synth.step import synthesis_step

log = logging.getLogger("fedtune")


def file_records(cfg: RunConfig, path: Path, loaded: LoadedModel | None = None) -> list[dict]:
    """This site's own data file, read like any data source (every format of docs/data.md,
    ``data.columns``, ``data.invalid_records``) and cleaned by the config's ``data.pipeline``;
    what is dropped is logged with its count."""
    records, _, _, report = read_records(cfg, str(path), cfg.train.record_kind)
    records, made = synthesized(records, path.name, synthesis_step(cfg, loaded))  # raw text -> pairs, here
    records, steps = run_pipeline(records, cfg.data.pipeline, path.name, scoring_context(loaded, cfg.data))
    dropped = {r["step"]: r["dropped"] for r in report + made + steps if r.get("dropped")}
    if dropped:
        log.warning("data-file %s: dropped %s", path, dropped)
    if not records:
        raise NodeConfigError(f"data-file {path}: no training record left after processing ({dropped})")
    return records


def local_records(cfg: RunConfig, node: NodeSettings, loaded: LoadedModel | None = None) -> list[dict]:
    """This node's training records. ``loaded`` is passed on to data processing steps that
    score records with the model."""
    if node.data_file is not None:
        return file_records(cfg, node.data_file, loaded)
    from fedtune.engine.workspace import (
        build_data,  # heavy imports: only nodes without a data file
    )

    data = build_data(cfg, loaded, cache_root())
    if not 0 <= node.client_id < data.num_clients:
        raise NodeConfigError(f"client-id {node.client_id} is outside the federation's "
                              f"{data.num_clients} clients (0..{data.num_clients - 1})")
    return data.clients[node.client_id].train


def local_data(cfg: RunConfig, node: NodeSettings, loaded: LoadedModel) -> LocalData:
    """Tokenized training data, as the embedded engine's workspace tokenizes it (cached on disk)."""
    tokenizer = loaded.tokenizer
    apply_template(tokenizer, getattr(cfg.data, "template", None))
    records = local_records(cfg, node, loaded)
    tokens = tokenize_train(records, cfg.train.record_kind, tokenizer, cfg.data.max_length, cfg.data.system_prompt,
                            cache_root() / "tokens")
    return LocalData(node.client_id, tokens,
                     task_stream(cfg.data.schedule, node.client_id, records, tokens.dropped, cfg.seed))
