"""Run a client's processing pipeline (``data.pipeline``) and count what every op keeps and drops."""

from __future__ import annotations

from collections.abc import Callable

from fedtune.data.ops.difficulty import ScoringContext
from fedtune.data.ops.registry import OPS
from fedtune.data.sources import DataError


def needs_model(ops: list) -> bool:
    """Whether any configured op reads the model (its tokenizer or log-probs)."""
    return any(OPS[op.op].target.needs_model for op in ops)


def run_pipeline(records: list[dict], ops: list, client: str,
                 context: Callable[[], ScoringContext] | None = None) -> tuple[list[dict], list[dict]]:
    """Apply ``ops`` in order; returns the kept records and one report row per op.

    ``context`` builds the model/tokenizer context lazily (only ops that need the model call it)."""
    rows = []
    for params in ops:
        op = OPS[params.op].target(params)
        if not records:
            rows.append({"client": client, "step": params.op, "kept": 0, "dropped": 0})
            continue
        if op.needs_model and context is None:
            raise DataError(f"data.pipeline {params.op}: needs the model's tokenizer; run it inside a run or "
                            "`fedtune data inspect`, which load the model")
        keep = op.keep(records, context() if op.needs_model else None)
        rows.append({"client": client, "step": params.op, "kept": sum(keep), "dropped": len(keep) - sum(keep)})
        records = [r for r, k in zip(records, keep) if k]
    return records, rows
