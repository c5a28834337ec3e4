"""The run's synthesis step: what ``synth`` does to each client's records, with a lazily built
generator (the run's own model with its adapter off by default, or the configured backend)."""

from __future__ import annotations

from fedtune.data.build import Transform
from fedtune.synth.generation import build_generator
from fedtune.synth.registry import SYNTHESIZERS


def synthesis_step(cfg, loaded) -> Transform | None:
    """``transform(records, client, sizes) -> (records, report rows)`` for ``cfg.synth``, or None."""
    if cfg.synth is None:
        return None
    method: list = []  # built on first use: a run whose data is cached never loads a generator

    def transform(records: list[dict], client: str, sizes: dict[str, int] | None = None):
        if not method:
            model, tokenizer = (loaded.model, loaded.tokenizer) if loaded is not None else (None, None)
            generator = build_generator(cfg.synth.generation, model, tokenizer)
            method.append(SYNTHESIZERS[cfg.synth.method].target(cfg.synth, generator, model, tokenizer,
                                                                 num_clients=cfg.federation.num_clients))
        return method[0].synthesize(records, client, sizes)

    return transform
