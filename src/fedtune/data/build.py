"""From ``data:`` in the config to a FederatedData: read → records → global test → partition →
per-client pipeline → per-client train/test split (→ canaries planted, ``data.canaries``). Every
dropped or planted record is a row in the report.

The result is cached on disk, keyed by the data config and the source files' size and mtime, so a
second run skips reading, partitioning and processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedtune.atomic_write import write_text_atomic
from fedtune.data.canaries import plant_canaries
from fedtune.data.federated import ClientData, FederatedData
from fedtune.data.formats import (
    PREFERENCE_FORMATS,
    detect_format,
    map_columns,
    to_record,
)
from fedtune.data.ops.difficulty import ScoringContext
from fedtune.data.ops.pipeline import needs_model, run_pipeline
from fedtune.data.partition import partition_indices
from fedtune.data.records import RecordError
from fedtune.data.sources import DataError, Table, fingerprint, read_source
from fedtune.data.suite import build_suite

if TYPE_CHECKING:
    from fedtune.config import RunConfig

CACHE_VERSION = 1
log = logging.getLogger(__name__)


def read_records(cfg: RunConfig, source: str, kind: str) -> tuple[list[dict], list[dict], Table, list[dict]]:
    """Records, their mapped raw rows, the table and report rows for what was dropped."""
    d = cfg.data
    table = read_source(source, d.subset, d.split, d.revision, d.limit)
    rows = [map_columns(r, d.columns) for r in table.rows]
    fmt = d.format if d.format != "auto" else detect_format(rows[0], table.where[0])
    records, kept, keep_idx, reasons = [], [], [], Counter()
    for i, (row, where) in enumerate(zip(rows, table.where)):
        try:
            rec = to_record(row, fmt, kind, where)
        except RecordError as e:
            if d.invalid_records == "error":
                raise
            reasons[str(e).split(": ", 1)[-1].split(" (")[0][:120]] += 1
            continue
        if fmt in PREFERENCE_FORMATS and kind == "preference" and rec["chosen"].strip() == rec["rejected"].strip():
            reasons["chosen == rejected"] += 1
            continue
        records.append(rec)
        kept.append(row)
        keep_idx.append(i)
    if len(keep_idx) < len(rows):
        table = Table([table.rows[i] for i in keep_idx], [table.where[i] for i in keep_idx],
                      [table.groups[i] for i in keep_idx] if table.groups else None)
    report = [{"client": "source", "step": f"read.{reason}", "dropped": n} for reason, n in reasons.items()]
    if reasons:
        log.warning("%s: dropped %d of %d rows: %s", source, sum(reasons.values()), len(rows), dict(reasons))
    if not records:
        raise DataError(f"{source}: no valid record left ({dict(reasons)})")
    return records, kept, table, report


def _labels(records: list[dict], rows: list[dict], table: Table, method: str, by: str) -> list[str]:
    if method == "natural" and table.groups is not None:
        return table.groups
    if method == "iid":
        return [""] * len(records)
    if by == "category":
        return [r["category"] for r in records]
    out = []
    for row, where in zip(rows, table.where):
        if row.get(by) is None:
            raise DataError(f"{where}: missing field '{by}' that data.partition.by names")
        out.append(str(row[by]))
    return out


def _split_count(n: int, share_or_count: int | float) -> int:
    return share_or_count if isinstance(share_or_count, int) else round(n * share_or_count)


def _take(items: list, idx: list[int]) -> list:
    return [items[i] for i in idx]


# ``synth``'s step on one client's records: (records, client, every client's size or None) ->
# (records, report rows); the
# synth package supplies it (``synth.step.synthesis_step``), so data does not depend on generation
Transform = Callable[[list[dict], str, "dict[str, int] | None"], tuple[list[dict], list[dict]]]


def build_federated_data(cfg: RunConfig, kind: str, context: Callable[[], ScoringContext] | None = None,
                         cache_dir: Path | None = None, transform: Transform | None = None) -> FederatedData:
    """The run's federated data; the built-in suite when ``data.source`` is unset. ``transform``
    (synthesis) runs on each client's records before the pipeline; it is cached with the data."""
    d = cfg.data
    if d.source is None and transform is None:
        data = build_suite(d.suite, cfg.federation.num_clients, cfg.seed, kind=kind)
    else:
        data = _cached(cfg, kind, context, cache_dir, transform)
    if any("text" in r for c in data.clients for r in c.train):
        raise DataError("data: the records are raw text (format text or data.suite.documents); set "
                        "synth: {method: u2s, examples: FILE} to turn them into instruction pairs")
    return plant_canaries(data, d.canaries, cfg.seed) if d.canaries else data


def synthesized(records: list[dict], client: str, transform: Transform | None,
                sizes: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
    """A client's records after ``transform`` (unchanged without one) and its report rows;
    ``sizes``: every client's record count before it, where known."""
    return transform(records, client, sizes) if transform is not None else (records, [])


def _cached(cfg: RunConfig, kind: str, context, cache_dir: Path | None, transform: Transform | None) -> FederatedData:
    key = cache_key(cfg, kind, context)
    path = Path(cache_dir) / f"data-{key}.json" if cache_dir else None
    if path is not None and path.exists():
        return _load(path)
    if cfg.data.source is None:  # the suite, synthesized per client
        data = build_suite(cfg.data.suite, cfg.federation.num_clients, cfg.seed, kind=kind)
        sizes = {c.name: len(c.train) for c in data.clients}
        for c in data.clients:
            c.train, steps = synthesized(c.train, c.name, transform, sizes)
            data.report["steps"] += steps
    else:
        data = _build(cfg, kind, context, transform)
    if path is not None:
        _save(data, path)
    return data


def _build(cfg: RunConfig, kind: str, context, transform: Transform | None = None) -> FederatedData:
    d, fed = cfg.data, cfg.federation
    seed = d.partition.seed if d.partition.seed is not None else cfg.seed
    records, rows, table, report = read_records(cfg, d.source, kind)
    order = list(range(len(records)))
    random.Random(f"{seed}/global-test").shuffle(order)
    if d.test_source:
        global_test, _, _, test_report = read_records(cfg, d.test_source, kind)
        report += [{**r, "client": "test_source"} for r in test_report]
        pool = sorted(order)
    else:
        n_test = _split_count(len(records), d.global_test)
        if n_test >= len(records):
            raise DataError(f"data.global_test: holding out {n_test} of {len(records)} records leaves none to train on")
        global_test, pool = _take(records, sorted(order[:n_test])), sorted(order[n_test:])
    if any("text" in r for r in global_test):
        raise DataError("data.test_source: raw text has no answers to test; give a held-out set of pairs")
    method = d.partition.method or ("natural" if table.groups is not None else "iid")
    labels = _labels(_take(records, pool), _take(rows, pool),
                     Table(where=_take(table.where, pool), groups=_take(table.groups, pool) if table.groups else None),
                     method, d.partition.by)
    indices, names = partition_indices(labels, method, d.partition, fed.num_clients, seed)
    if method == "natural":
        indices, names = _first_clients(cfg, indices, names, report)
    assigned = sum(len(i) for i in indices)
    if assigned < len(pool):
        report.append({"client": "source", "step": f"partition.{method}.unassigned", "dropped": len(pool) - assigned})

    clients = []
    sizes = {name: len(idx) for idx, name in zip(indices, names)}
    for cid, (idx, name) in enumerate(zip(indices, names)):
        recs, made = synthesized(_take(records, _take(pool, idx)), name, transform, sizes)
        recs, steps = run_pipeline(recs, d.pipeline, name, context)
        report += made + steps
        if not recs:
            if d.empty_client == "error":
                raise DataError(f"data: client {name!r} has no training record after partitioning and processing "
                                f"({steps or 'empty partition'}); set data.empty_client: skip to leave such clients out")
            report.append({"client": name, "step": "empty_client.skipped", "dropped": 0})
            log.warning("data: client %r has no training record left; skipped (data.empty_client: skip)", name)
            continue
        rng = random.Random(f"{seed}/{name}/split")
        rng.shuffle(recs)
        n_test = min(round(len(recs) * d.test_fraction), len(recs) - 1)
        clients.append(ClientData(len(clients), name, recs[n_test:], recs[:n_test]))
    return FederatedData(kind, clients, global_test, {"steps": report, "source": d.source, "partition": method})


def _first_clients(cfg: RunConfig, indices, names, report):
    """A natural partition has its own client count; an explicit smaller num_clients keeps the
    first k clients (as FedLLM-Bench does), a larger one is an error."""
    if "num_clients" not in cfg.federation.model_fields_set:
        return indices, names
    k = cfg.federation.num_clients
    if k > len(names):
        raise DataError(f"federation.num_clients: {k}, but the data has {len(names)} clients (natural partition)")
    dropped = sum(len(i) for i in indices[k:])
    if dropped:
        report.append({"client": "source", "step": f"partition.natural.clients_beyond_{k}", "dropped": dropped})
    return indices[:k], names[:k]


# ------------------------------------------------------------------------------ cache


def cache_key(cfg: RunConfig, kind: str, context) -> str:
    d = cfg.data.model_dump(mode="json", exclude={"suite", "canaries"})  # canaries are planted after the cache
    parts = [CACHE_VERSION, d, kind, cfg.seed, fingerprint(cfg.data.source) if cfg.data.source else None,
             fingerprint(cfg.data.test_source) if cfg.data.test_source else None,
             cfg.federation.num_clients, "num_clients" in cfg.federation.model_fields_set]
    if needs_model(cfg.data.pipeline) or cfg.synth is not None:
        parts.append([cfg.model.name, cfg.model.gguf_file, cfg.model.revision])
    if cfg.synth is not None:  # synthesized records depend on the method, its examples and generator
        synth = cfg.synth.model_dump(mode="json")
        parts += [synth, fingerprint(synth["examples"]) if synth.get("examples") else None,
                  cfg.data.suite.model_dump(mode="json") if cfg.data.source is None else None]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _save(data: FederatedData, path: Path) -> None:
    write_text_atomic(path, json.dumps({
        "kind": data.kind, "global_test": data.global_test, "report": data.report,
        "clients": [{"id": c.client_id, "name": c.name, "train": c.train, "test": c.test} for c in data.clients],
    }))


def _load(path: Path) -> FederatedData:
    raw = json.loads(path.read_text(encoding="utf-8"))
    clients = [ClientData(c["id"], c["name"], c["train"], c["test"]) for c in raw["clients"]]
    return FederatedData(raw["kind"], clients, raw["global_test"], raw["report"])
