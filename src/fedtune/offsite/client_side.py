"""The ``offsite`` config section and what it builds: the client model, saved once by the owner.

``offsite: {method: emulator | fedsp, ...}`` makes the clients train a stand-in for the model
(registered methods, one file each) instead of the model itself. The owner (the server) builds it
from the full model, optionally distils it on its own text, and saves it to a directory the
clients load — the only copy of model weights that leaves the owner. What travels each round is
the adapter of the client model; ``ClientSide.to_server`` renames its tensors to the owner's
layers (offsite-tuning's plug-in), so the server scores the full model with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fedtune.adapter_state import AdapterState
from fedtune.cache import cache_root
from fedtune.data.sources import fingerprint
from fedtune.models.adapters import attach_adapter
from fedtune.models.fingerprint import weights_fingerprint
from fedtune.offsite.layers import LAYOUT, load_client_model, save_client_model
from fedtune.schema import ConfigError, Registry

OFFSITE = Registry("offsite", tag="method")
_BLOCK = re.compile(r"\.(layers|h)\.(\d+)\.")


@dataclass
class BuiltClientModel:
    """What a method's builder returns: the bare client model and how it maps to the owner's."""

    model: torch.nn.Module
    sources: list[int]  # owner layer each client layer was copied from
    tie: bool  # repeated sources share parameters
    adapter_layers: list[int] | None  # client layers the adapter sits in; None = the method's own
    server_layers: dict[int, int] | None  # client adapter layer -> owner layer; None = same keys
    label: str | None  # name of the client model's own score in eval rows; None = not scored
    personal_model: bool  # the clients also train the model's weights (kept on the client)
    distill_losses: list[float] = field(default_factory=list)


@dataclass
class ClientSide:
    """What the clients hold in place of the owner's model."""

    model: object  # the client model with the run's adapter: what clients train
    directory: Path  # the client model as saved for the clients (without adapter)
    layout: dict  # the saved layout (LAYOUT): sources, adapter/server layers, label, distillation

    @property
    def label(self) -> str | None:
        return self.layout["label"]

    @property
    def personal_model(self) -> bool:
        return self.layout["personal_model"]

    def to_server(self, adapter: AdapterState) -> AdapterState:
        """The client adapter renamed to the owner's layers (identity where the keys agree)."""
        mapping = self.layout["server_layers"]
        if mapping is None:
            return adapter
        return {_BLOCK.sub(lambda m: f".{m[1]}.{mapping[m[2]]}.", k): v for k, v in adapter.items()}


def _cache_dir(cfg, base) -> Path:
    """Where the client model of ``cfg`` is kept: keyed by everything it is built from."""
    params = cfg.offsite.model_dump(mode="json", exclude={"client_model"})
    source = params.get("distill", {}).get("source")
    key = json.dumps([cfg.model.name, weights_fingerprint(base), params, cfg.seed,
                      fingerprint(source) if source else None], sort_keys=True)
    return cache_root() / "client_models" / hashlib.sha256(key.encode()).hexdigest()[:16]


def client_directory(cfg, base) -> Path:
    return Path(cfg.offsite.client_model).expanduser() if cfg.offsite.client_model else _cache_dir(cfg, base)


def build_client_side(cfg, base, tokenizer) -> tuple[ClientSide, list[int] | None]:
    """The clients' model with the run's adapter, built from ``base`` (the owner's bare model)
    and saved, or loaded where an earlier run (or ``--resume``) saved it; plus the owner layers
    the server model's adapter sits in (None = all)."""
    directory = client_directory(cfg, base)
    if not (directory / LAYOUT).is_file():
        built = OFFSITE[cfg.offsite.method].target(cfg.offsite, base, tokenizer, cfg.seed)
        layout = {"method": cfg.offsite.method, "adapter_layers": built.adapter_layers,
                  "server_layers": {str(k): v for k, v in built.server_layers.items()} if built.server_layers else None,
                  "label": built.label, "personal_model": built.personal_model,
                  "distill_losses": built.distill_losses}
        tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
        save_client_model(built.model, tmp, built.sources, built.tie, layout)
        if not directory.exists():
            os.replace(tmp, directory)
        shutil.rmtree(tmp, ignore_errors=True)
    client = load_client_side(cfg, directory)
    server = sorted(client.layout["server_layers"].values()) if client.layout["server_layers"] else None
    return client, server


def load_client_side(cfg, directory: Path) -> ClientSide:
    """The saved client model in ``directory`` with the run's adapter (what a client loads)."""
    bare, layout = load_client_model(directory)
    if layout["method"] != cfg.offsite.method:
        raise ConfigError(f"offsite.client_model: {directory} holds a {layout['method']} client model, "
                          f"not {cfg.offsite.method}")
    model = attach_adapter(bare, cfg.model.adapter, seed=cfg.seed, layers=layout["adapter_layers"])
    return ClientSide(model, directory, layout)


def for_clients(cfg, client: ClientSide | None):
    """``cfg`` as the clients get it: naming the saved client model they load (never the owner's)."""
    if client is None:
        return cfg
    offsite = cfg.offsite.model_copy(update={"client_model": str(client.directory.resolve())})
    return cfg.model_copy(update={"offsite": offsite})
