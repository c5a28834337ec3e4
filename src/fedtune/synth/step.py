"""The run's synthesis step: what ``synth`` does to each client's records, with a lazily built
generator (the run's own model with its adapter off by default, or the configured backend).
Methods that simulate (MATRIX, MATRIX-Gen) leave every model call in ``transcripts``: they are
written to ``<transcripts>/<client>.jsonl`` (default ``<run>/synth/transcripts``) as each
client's synthesis finishes."""

from __future__ import annotations

import json
from pathlib import Path

from fedtune.data.build import Transform
from fedtune.synth.generation import build_generator
from fedtune.synth.registry import SYNTHESIZERS


def synthesis_step(cfg, loaded, transcripts: Path | None = None) -> Transform | None:
    """``transform(records, client, sizes) -> (records, report rows)`` for ``cfg.synth``, or None
    (no synthesis, or one the server runs after training)."""
    if cfg.synth is None or SYNTHESIZERS[cfg.synth.method].target.runs_on == "server":
        return None
    method: list = []  # built on first use: a run whose data is cached never loads a generator

    def transform(records: list[dict], client: str, sizes: dict[str, int] | None = None):
        if not method:
            model, tokenizer = (loaded.model, loaded.tokenizer) if loaded is not None else (None, None)
            generator = build_generator(cfg.synth.generation, model, tokenizer)
            method.append(SYNTHESIZERS[cfg.synth.method].target(cfg.synth, generator, model, tokenizer,
                                                                 num_clients=cfg.federation.num_clients))
        out = method[0].synthesize(records, client, sizes)
        save_transcripts(getattr(method[0], "transcripts", []), client,
                         transcripts or cfg.run_dir() / "synth" / "transcripts")
        return out

    return transform


def save_transcripts(transcripts: list[dict], client: str, directory: Path) -> None:
    """``<directory>/<client>.jsonl``: the client's simulations, every call in order."""
    rows = [t for t in transcripts if t["client"] == client]
    if rows:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{client}.jsonl").write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in rows),
                                                   encoding="utf-8")
