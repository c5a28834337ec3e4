"""What a ClientApp process keeps between messages, and one round of local training.

The base model with LoRA is loaded once per process and cached by model config (Flower's
simulation engine reuses its worker processes, so nodes there load it once; a deployment
SuperNode starts a fresh ClientApp process per message, so there the site's resident trainer
process calls ``train`` and keeps the model instead; see ``resident_trainer``).
Tokenized data is cached in memory per client and on disk across processes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from fedtune.client.alternating import snapshot
from fedtune.client.state_store import ClientStateStore
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.compression.transport import received_start
from fedtune.config import RunConfig
from fedtune.flower.node_config import NodeConfigError, NodeSettings
from fedtune.flower.node_data import local_data
from fedtune.flower.wire import TrainJob
from fedtune.models.adapters import attach_adapter
from fedtune.models.device import resolve_device
from fedtune.models.loader import LoadedModel
from fedtune.offsite import load_client_side
from fedtune.privacy.dp_sgd import sample_level_privacy
from fedtune.protocol import ClientUpdate
from fedtune.quality.feddqc import data_quality

log = logging.getLogger("fedtune")
_MODELS: dict[str, LoadedModel] = {}  # model config -> the LoRA model and its tokenizer (the latest only)
_PERSONAL_START: dict[str, dict] = {}  # model config -> FedSP's starting weights of its client model
_DATA: dict[str, LocalData] = {}  # (data config, node) -> tokenized training data


def _model_key(cfg: RunConfig) -> str:
    return json.dumps([cfg.model.model_dump(mode="json"), cfg.offsite and cfg.offsite.model_dump(mode="json")],
                      sort_keys=True)


def model_for(cfg: RunConfig) -> LoadedModel:
    """The model with its adapter and the tokenizer for ``cfg.model``, loaded on first use in this
    process; with ``offsite``, the client model the server saved (the owner's model never loads here)."""
    key = _model_key(cfg)
    if key not in _MODELS:
        from fedtune.models.loader import load_base, load_tokenizer

        _MODELS.clear()  # one model at a time: a long-lived process may serve many runs
        _PERSONAL_START.clear()
        if cfg.offsite is not None:
            log.info("loading the client model %s (process %d)", cfg.offsite.client_model, os.getpid())
            client = load_client_side(cfg, Path(cfg.offsite.client_model))
            client.model.to(resolve_device(cfg.model.device))
            loaded = LoadedModel(client.model, load_tokenizer(cfg.model.name, cfg.model.gguf_file, cfg.model.revision),
                                 cfg.model.name)
            if client.personal_model:  # FedSP: the weights each client's own copy starts from
                _PERSONAL_START[key] = snapshot(client.model)
        else:
            log.info("loading base model %s (process %d)", cfg.model.name, os.getpid())
            loaded = load_base(cfg.model)
            loaded.model = attach_adapter(loaded.model, cfg.model.adapter, seed=cfg.seed)
        _MODELS[key] = loaded
    return _MODELS[key]


def personal_start(cfg: RunConfig) -> dict | None:
    """FedSP's starting model weights of the loaded client model (``model_for`` first), else None."""
    return _PERSONAL_START.get(_model_key(cfg))


def data_for(cfg: RunConfig, node: NodeSettings, loaded: LoadedModel) -> LocalData:
    key = json.dumps([cfg.data.model_dump(mode="json"), cfg.model.name, cfg.seed, cfg.federation.num_clients,
                      cfg.train.record_kind, node.client_id, str(node.data_file or "")], sort_keys=True)
    if key not in _DATA:
        _DATA[key] = local_data(cfg, node, loaded)
    return _DATA[key]


def state_store(cfg: RunConfig, node: NodeSettings, flower_run_id: int, resumed_from: int) -> ClientStateStore:
    """Client-side state of this fedtune run. The first message of each Flower run (a new run or
    a resume) drops state written after the server's checkpoint, as the embedded engine does."""
    if node.state_dir is not None:
        root = node.state_dir
    else:
        from flwr.supercore.utils import get_flwr_home

        root = get_flwr_home() / "fedtune-node-state"
    run_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.name}-{cfg.run_dir().resolve()}")[-120:]
    store = ClientStateStore(root / run_key / f"node_client_{node.client_id}")  # one root per client
    marker = store.root / "flower-run-id"
    if not marker.exists() or marker.read_text().strip() != str(flower_run_id):
        store.rollback(resumed_from)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(flower_run_id))
    return store


def train(job: TrainJob, node: NodeSettings, flower_run_id: int) -> ClientUpdate:
    """Run ``job`` with our LocalTrainer on this node's data."""
    cfg, ins = job.cfg, job.instruction
    if node.threads:
        import torch

        torch.set_num_threads(node.threads)
    if ins.client_id != node.client_id:
        raise NodeConfigError(f"this node is client {node.client_id} but was asked to train client {ins.client_id}")
    loaded = model_for(cfg)
    data = data_for(cfg, node, loaded)
    store = state_store(cfg, node, flower_run_id, job.resumed_from)
    store.round = ins.round
    if cfg.train.reference == "start" and job.reference is None:
        raise NodeConfigError("train.objective.reference=start, but the server sent no reference adapter")
    trainer = LocalTrainer(loaded.model, loaded.tokenizer, cfg.train, store, seed=cfg.seed, reference=job.reference,
                           privacy=sample_level_privacy(cfg), quality=data_quality(cfg),
                           personal_start=personal_start(cfg))
    return trainer.train(ins, received_start(ins, job.start), data)

