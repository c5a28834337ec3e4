"""The experiment config: the sections each package owns, assembled into one ``RunConfig``, with
one-line errors that name the key.

``load_config(path, overrides)`` is the only entry point the CLI uses. Unknown keys are errors
(with the closest valid key suggested, or the valid keys of the chosen component), never
silently ignored. Sections live beside their code: ``model`` in ``models/config.py``, ``data`` in
``data/config.py``, ``train`` in ``client/train_config.py``, ``eval`` in ``eval/config.py``; a
component's parameters (an algorithm, objective, reducer, adapter, op, metric) in its own file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from fedtune.algorithms import ALGORITHMS
from fedtune.algorithms.aggregation import REDUCERS, AggregationConfig
from fedtune.attacks import ATTACKS
from fedtune.client.objectives import OBJECTIVES
from fedtune.client.train_config import TrainConfig
from fedtune.compression import CommunicationConfig
from fedtune.data.config import DataConfig
from fedtune.decentralized import TopologyConfig
from fedtune.defenses.config import DefenseConfig
from fedtune.eval.config import EvalConfig
from fedtune.models.config import ModelConfig
from fedtune.offsite import OFFSITE
from fedtune.privacy import PrivacyConfig
from fedtune.quality import QualityConfig
from fedtune.schema import CHOICE_ERROR, TAGS, ConfigError, Registry, Section
from fedtune.selective import SelectiveConfig
from fedtune.synth import SYNTHESIZERS
from fedtune.tracking import TRACKERS

__all__ = ["ConfigError", "RunConfig", "load_config", "from_dict", "dump_config", "Section"]


class FederationConfig(Section):
    num_clients: int = Field(4, ge=1)
    # An int is a count; a float in (0, 1] is a fraction of num_clients (at least one client).
    clients_per_round: int | float = 1.0
    rounds: int = Field(5, ge=1)
    sampling_seed: int | None = None  # defaults to the run seed
    # The embedded engine trains each round's clients in parallel, one worker process per device
    # listed (e.g. [cuda:0, cuda:1]; [cpu, cpu] on a CPU), the base model loaded once per worker;
    # empty = one after the other in this process. Same results as sequential (docs/devices.md).
    client_devices: list[str] = []

    @field_validator("clients_per_round")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError("a fraction must be in (0, 1]; use an int for a count")
        if isinstance(v, int) and v < 1:
            raise ValueError("a count must be >= 1")
        return v

    def per_round(self) -> int:
        k = self.clients_per_round
        if isinstance(k, float):
            return max(1, round(k * self.num_clients))
        return min(k, self.num_clients)


class OutputConfig(Section):
    dir: str | None = None  # default runs/<name>
    checkpoint_every: int = Field(1, ge=1)


class RunConfig(Section):
    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    federation: FederationConfig = FederationConfig()
    # The FL algorithm and its own parameters, e.g. {name: fedprox, mu: 0.01} (`fedtune ls algorithms`).
    algorithm: ALGORITHMS.choice(default="fedavg") = "fedavg"
    aggregation: AggregationConfig = AggregationConfig()
    # No server: {mode: decentralized, graph: complete | ring | random(k) | learned, alpha: 0.8,
    # gossip_steps: 1}: each client keeps its own adapter and mixes it with its neighbours'
    # (docs/decentralized.md); mode: server (default) aggregates on a server.
    topology: TopologyConfig = TopologyConfig()
    # Simulated attackers, e.g. {method: alie, clients: 0.2} (`fedtune ls attacks`); null = none.
    attack: ATTACKS.choice(optional=True) = None
    train: TrainConfig = TrainConfig()
    # Server-side defenses on the global adapter, e.g. {posthoc: {steps: 20, level: 2}}.
    defense: DefenseConfig = DefenseConfig()
    # How client updates travel: {compress: none | fp16 | bf16 | int8 | {name: topk, ratio: 0.01}}.
    communication: CommunicationConfig = CommunicationConfig()
    # Data-quality control on each client, e.g. {score: ira, select_rate: 0.5, order: easy_to_hard, stages: 3}.
    quality: QualityConfig | None = None
    # Selective layer fine-tuning: which transformer layers each client trains and sends, e.g.
    # {layers: 2, strategy: strategic, balance: 0.5} (docs/selective.md); null = every layer.
    selective: SelectiveConfig | None = None
    # Data synthesis on each client before training, e.g. {method: u2s, examples: pool.jsonl, k: 3}
    # (raw text -> instruction pairs; docs/synthesis.md); null = train on the data as it is.
    synth: SYNTHESIZERS.choice(optional=True) = None
    # Tuning without the model: clients train a stand-in the server builds from it, e.g.
    # {method: emulator, bottom: 2, top: 2, drop_ratio: 0.5} (offsite-tuning) or {method: fedsp}
    # (docs/offsite.md); null = clients train the model itself.
    offsite: OFFSITE.choice(optional=True) = None
    # Differential privacy and secure aggregation, e.g. {client_level: {clip_norm: 1.0, target_epsilon: 8}}.
    privacy: PrivacyConfig = PrivacyConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()
    # Experiment tracking: the config, every round's metrics and the final adapter, e.g. {backend: mlflow,
    # tracking_uri: http://localhost:5000} or {backend: tensorboard} (pip install 'fedtune[tracking]'); null = none.
    tracking: TRACKERS.choice(optional=True) = None
    # Multi-stage runs: each entry overrides sections of this config for one stage, e.g.
    # [{train: {objective: sft}}, {train: {objective: {name: dpo, reference: start}}, federation: {rounds: 3}}].
    # A stage starts from the previous stage's global adapter.
    stages: list[dict[str, Any]] = []

    def stage_configs(self) -> list["RunConfig"]:
        """One validated config per stage (each writing to <run dir>/stage_<i>)."""
        base = self.model_dump(mode="json")
        base.pop("stages")
        out = []
        for i, overrides in enumerate(self.stages):
            merged = _deep_merge(base, overrides)
            merged["name"] = f"{self.name}-stage{i}"
            merged.setdefault("output", {})["dir"] = str(self.run_dir() / f"stage_{i}")
            out.append(from_dict(merged, f"stages[{i}]"))
        return out

    def run_dir(self) -> Path:
        return Path(self.output.dir or f"runs/{self.name}")


# ---------------------------------------------------------------- loading and overrides


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``path`` (for suggestions)."""
    for part in path:
        if not isinstance(part, str):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return model
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return model
    return model


def _format_error(err: dict, source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc)
    if err["type"] == CHOICE_ERROR:  # a registered component's own validation (schema.Registry)
        ctx = err["ctx"]
        key = ".".join(x for x in (key, ctx["sub"]) if x)
        if ctx["kind"] == "unknown":
            return f"{source}: unknown key '{key}' {ctx['text'].removeprefix('unknown key ')}"
        return f"{source}: '{key}': {ctx['text']}"
    if err["type"] == "extra_forbidden":
        owner = _model_at(RunConfig, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1) if owner else []
        hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
        return f"{source}: unknown key '{key}'{hint}"
    return f"{source}: '{key}': {err['msg']} (got {err.get('input')!r})"


def _deep_merge(base: dict, overrides: dict) -> dict:
    """``overrides`` merged into ``base``; a mapping that names another component (another
    algorithm, objective, …) replaces the old one instead of inheriting its parameters."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        if isinstance(value, str) and isinstance(old, dict) and any(t in old for t in TAGS):
            value = {next(t for t in TAGS if t in old): value}  # the short form of a choice
        switched = isinstance(value, dict) and isinstance(old, dict) and any(
            t in value and t in old and value[t] != old[t] for t in TAGS)
        out[key] = _deep_merge(old, value) if isinstance(value, dict) and isinstance(old, dict) and not switched else value
    return out


def _choice_tag(path: list[str]) -> str | None:
    """The tag key ("name", "method", "op") when ``path`` is a component choice in RunConfig."""
    model: type[BaseModel] = RunConfig
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return None
        registry = next((m for m in field.metadata if isinstance(m, Registry)), None)
        if registry is not None:
            return registry.tag if i == len(path) - 1 else None
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return None


def apply_overrides(tree: dict, overrides: list[tuple[str, Any]]) -> None:
    """Set ``tree['a']['b'] = value`` for each ``('a.b', value)``, creating sections as needed.

    A component given in short form (``objective: sft``) is opened into ``{name: sft}`` when a key
    below it is set. Setting a component's tag to another component (``algorithm.name=local``)
    drops the keys the config file gave the old one — they belong to it — but keeps every key
    set on the command line, whatever their order."""
    from_cli = {key for key, _ in overrides}
    switched = []
    for dotted, value in overrides:
        parts = dotted.split(".")
        node = tree
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if isinstance(nxt, str) and (tag := _choice_tag(parts[: i + 1])):
                nxt = node[part] = {tag: nxt}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {dotted}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        last = parts[-1]
        if last == _choice_tag(parts[:-1]) and node.get(last, value) != value:
            switched.append(parts[:-1])
        node[last] = value
    for path in switched:
        node = tree
        for part in path:
            node = node[part]
        prefix = ".".join(path)
        for key in [k for k in node if k not in TAGS and f"{prefix}.{k}" not in from_cli]:
            del node[key]


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``key=value`` pairs; values are parsed as YAML scalars/lists (``lr=1e-3``, ``rules=[a,b]``)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else "")) 
    return out


def from_dict(data: dict, source: str = "config") -> RunConfig:
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e.errors()[0], source)) from None
    check_constraints(cfg, source)
    return cfg


def check_constraints(cfg: RunConfig, source: str = "config") -> None:
    """What no single section can check alone: the reducer's needs against the clients per round,
    the attackers against the clients."""
    reducer = cfg.aggregation.reducer
    needed = REDUCERS[reducer.name].target(reducer).min_clients()
    per_round = cfg.federation.per_round()
    if per_round < needed:
        rule = REDUCERS[reducer.name].target.requirement
        raise ConfigError(f"{source}: 'aggregation.reducer': {reducer.name} with these parameters needs at least "
                          f"{needed} clients per round ({rule}), but federation samples {per_round}")
    attack = cfg.attack
    if attack is not None and isinstance(attack.clients, list):
        bad = [c for c in attack.clients if c >= cfg.federation.num_clients]
        if bad:
            raise ConfigError(f"{source}: 'attack.clients': client {bad[0]} does not exist "
                              f"(federation.num_clients = {cfg.federation.num_clients})")
    if cfg.data.canaries is None and any(m.name == "canary_exposure" for m in cfg.eval.metrics or []):
        raise ConfigError(f"{source}: 'eval.metrics': canary_exposure needs data.canaries (the secrets it measures)")
    _check_privacy(cfg, source)
    _check_gradient_checkpointing(cfg, source)
    _check_secure_aggregation(cfg, source)
    _check_compression(cfg, source)
    _check_selective(cfg, source)
    _check_topology(cfg, source)
    _check_schedule(cfg, source)
    _check_offsite(cfg, source)
    _check_server_synthesis(cfg, source)


# the adapters each client-model method can carry: the emulator's sit in its adapter layers, FedSP's is a prompt
OFFSITE_ADAPTERS = {"emulator": ("lora", "dora"), "fedsp": ("prefix", "prompt", "p-tuning")}


def _check_offsite(cfg: RunConfig, source: str) -> None:
    """What a client model (emulator, FedSP's auxiliary model) can be combined with."""
    off = cfg.offsite
    if off is None:
        return
    key = f"{source}: 'offsite'"
    allowed = OFFSITE_ADAPTERS[off.method]
    if cfg.model.adapter.method not in allowed:
        raise ConfigError(f"{key}: {off.method} trains a {' / '.join(allowed)} adapter "
                          f"(model.adapter.method is {cfg.model.adapter.method})")
    if cfg.selective is not None:
        raise ConfigError(f"{key}: selective layers choose among the model's layers; drop `selective`")
    if cfg.defense.posthoc is not None:
        raise ConfigError(f"{key}: defense.posthoc fine-tunes on the server's model; drop one of them")
    if off.method == "fedsp" and cfg.privacy.sample_level is not None:
        raise ConfigError(f"{key}: FedSP's clients train their auxiliary model without DP-SGD, and the prompt "
                          "they send is trained on it; drop privacy.sample_level")


def _check_server_synthesis(cfg: RunConfig, source: str) -> None:
    """KnowledgeSG runs on the server's model after the last round, with demonstrations the server holds."""
    if cfg.synth is None or cfg.synth.method != "knowledgesg":
        return
    key = f"{source}: 'synth'"
    if cfg.offsite is not None:
        raise ConfigError(f"{key}: KnowledgeSG generates with the global adapter on the full model; drop `offsite`")
    if cfg.synth.examples is None and cfg.data.source is not None:
        raise ConfigError(f"{key}: set synth.examples, the file of demonstrations the server holds (SFT records); "
                          "the clients' records are not the server's to show")


def _check_topology(cfg: RunConfig, source: str) -> None:
    """Decentralized rounds have no server: nothing that runs on one can be asked for."""
    if cfg.topology.mode != "decentralized":
        return
    key = f"{source}: 'topology'"
    server_side = {"algorithm.name": cfg.algorithm.name != "fedavg",
                   "privacy.client_level": cfg.privacy.client_level is not None,
                   "privacy.secure_aggregation": cfg.privacy.secure_aggregation is not None,
                   "defense.posthoc": cfg.defense.posthoc is not None,
                   "attack": cfg.attack is not None, "selective": cfg.selective is not None,
                   "offsite": cfg.offsite is not None}
    for name, set_ in server_side.items():
        if set_:
            raise ConfigError(f"{key}: mode decentralized has no server; {name} needs one (drop it, or use mode: server)")


def _check_schedule(cfg: RunConfig, source: str) -> None:
    """A task stream chooses each round's examples itself; what also chooses them, or needs the
    whole set each step, cannot run with it. Forgetting is measured on each client's split."""
    if cfg.data.schedule is None:
        return
    key = f"{source}: 'data.schedule'"
    if cfg.quality is not None:
        raise ConfigError(f"{key}: quality also chooses each round's examples; drop one of them")
    if cfg.privacy.sample_level is not None:
        raise ConfigError(f"{key}: DP-SGD samples from the whole training set; drop one of them")
    if ALGORITHMS[cfg.algorithm.name].target.pools_data:
        raise ConfigError(f"{key}: {cfg.algorithm.name} pools every client's data into one set; streams are per client")
    if not cfg.eval.per_client:
        raise ConfigError(f"{key}: forgetting is measured on each client's own test split; set eval.per_client: true")


def _check_selective(cfg: RunConfig, source: str) -> None:
    """Selective layers send part of each adapter; what needs whole updates cannot take them, and
    data-dependent selection is outside the DP guarantee."""
    sel = cfg.selective
    if sel is None:
        return
    key = f"{source}: 'selective'"
    if cfg.attack is not None:
        raise ConfigError(f"{key}: simulated attacks craft whole updates; drop `attack` or `selective`")
    if cfg.privacy.secure_aggregation is not None:
        raise ConfigError(f"{key}: SecAgg+ sums whole adapters; each layer needs its own sum over its clients")
    if cfg.privacy.sample_level is not None:
        raise ConfigError(f"{key}: DP-SGD with frozen adapter layers is not supported; drop one of them")
    if cfg.privacy.client_level is not None and sel.probes:
        raise ConfigError(f"{key}: strategy {sel.strategy} chooses layers from gradients of the clients' data, "
                          "which client-level DP does not cover; use all, top, bottom or both")
    if cfg.privacy.client_level is not None and sel.budgets != "equal":
        raise ConfigError(f"{key}: client-level DP's noise is calibrated to one mean over all clients; "
                          "heterogeneous budgets give each layer its own set of clients (use budgets: equal)")


def _check_compression(cfg: RunConfig, source: str) -> None:
    """Compression replaces the adapter on the wire; what needs the plain update cannot use it."""
    strategy = ALGORITHMS[cfg.algorithm.name].target
    for direction in ("compress", "download"):
        if getattr(cfg.communication, direction).name == "none":
            continue
        key = f"{source}: 'communication.{direction}'"
        if strategy.pools_data or strategy.personal_adapters:
            raise ConfigError(f"{key}: {cfg.algorithm.name} sends no adapters to compress")
        if cfg.privacy.secure_aggregation is not None:
            raise ConfigError(f"{key}: SecAgg+ carries the plain adapter; use none with secure_aggregation")
    if cfg.communication.compress.name != "none" and cfg.attack is not None:
        raise ConfigError(f"{source}: 'communication.compress': simulated attacks craft plain updates; "
                          "drop `attack` or use compress: none")


def _check_secure_aggregation(cfg: RunConfig, source: str) -> None:
    """Refuse, with the reason, what cannot run when the server sees only the clients' sum (SecAgg+)."""
    sa = cfg.privacy.secure_aggregation
    if sa is None:
        return
    strategy = ALGORITHMS[cfg.algorithm.name].target
    where = f"{source}: 'privacy.secure_aggregation'"
    if cfg.federation.per_round() < 2:
        raise ConfigError(f"{where} needs at least 2 sampled clients per round (federation.clients_per_round)")
    if cfg.aggregation.reducer.name != "mean":
        raise ConfigError(f"{where}: aggregation.reducer={cfg.aggregation.reducer.name} needs each client's update; "
                          "the server sees only their sum (use mean)")
    imposed = strategy.fixed_weighting(cfg.algorithm) if hasattr(strategy, "fixed_weighting") else None
    dp = cfg.privacy.client_level
    if dp is None and (imposed or cfg.aggregation.weighting) != "examples":
        raise ConfigError(f"{where}: SecAgg+ weights clients by their example counts; aggregation.weighting "
                          "must be examples")
    if strategy.sends_client_tensors:
        raise ConfigError(f"{where}: algorithm.name={cfg.algorithm.name} sends tensors besides the adapter, "
                          "which SecAgg+ does not sum")
    if cfg.attack is not None:
        raise ConfigError(f"{where}: a simulated attack needs the individual updates; drop `attack`")
    if dp is not None and (dp.side != "client" or dp.clipping != "fixed"):
        raise ConfigError(f"{where} with privacy.client_level needs side: client and clipping: fixed (the server "
                          "sees neither single updates to clip nor the bits adaptive clipping counts)")
    if sa.timeout is not None and sa.timeout <= 0:
        raise ConfigError(f"{source}: 'privacy.secure_aggregation.timeout' must be positive or null")


def _check_gradient_checkpointing(cfg: RunConfig, source: str) -> None:
    """What activation checkpointing cannot run with (both checked on tiny-random)."""
    if not cfg.train.gradient_checkpointing:
        return
    key = f"{source}: 'train.gradient_checkpointing'"
    if cfg.privacy.sample_level is not None:
        raise ConfigError(f"{key}: Opacus records no per-example gradients in a checkpointed layer (its forward "
                          "is recomputed in backward); turn it off under privacy.sample_level")
    if cfg.model.adapter.method == "prefix":
        raise ConfigError(f"{key}: transformers drops the attention cache in checkpointed layers, and prefix "
                          "tuning's prefixes live there; turn it off or use another adapter")


def _check_privacy(cfg: RunConfig, source: str) -> None:
    """DP-SGD needs per-example gradients; client-level DP's noise is calibrated to the
    equal-weight mean of whole updates."""
    objective = OBJECTIVES[cfg.train.objective.name].target
    if cfg.privacy.sample_level is not None and not objective.per_example:
        raise ConfigError(f"{source}: 'privacy.sample_level': {objective.name}'s loss is not a sum over examples, "
                          "so DP-SGD has no per-example gradient to clip (use sft or dpo)")
    if cfg.privacy.sample_level is not None and cfg.model.adapter.method in ("dora", "ia3"):
        raise ConfigError(f"{source}: 'privacy.sample_level': Opacus has no per-example gradients for "
                          f"{cfg.model.adapter.method}'s layers (DoRA's magnitude normalisation, IA³'s scaling "
                          "vectors); use lora or a soft prompt with DP-SGD")
    if cfg.privacy.sample_level is not None and cfg.quality is not None:
        raise ConfigError(f"{source}: 'quality': choosing examples by their scores is a data-dependent step "
                          "DP-SGD's guarantee does not cover; drop quality or privacy.sample_level")
    dp = cfg.privacy.client_level
    if dp is None:
        return
    strategy = ALGORITHMS[cfg.algorithm.name].target
    key = f"{source}: 'privacy.client_level'"
    if strategy.pools_data or strategy.personal_adapters:
        raise ConfigError(f"{key}: {cfg.algorithm.name} has no aggregation step to privatize")
    if strategy.sends_client_tensors:
        raise ConfigError(f"{key}: {cfg.algorithm.name}'s clients send tensors besides the adapter, which the "
                          "DP noise does not cover")
    if cfg.aggregation.reducer.name != "mean":
        raise ConfigError(f"{key}: needs aggregation.reducer: mean (the noise is calibrated to the mean's "
                          f"sensitivity C/m, not {cfg.aggregation.reducer.name}'s)")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read YAML (or start from defaults when ``path`` is None), apply ``--set`` overrides, validate."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} invalid YAML: {getattr(e, 'problem', e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    apply_overrides(data, parse_overrides(list(overrides)))
    return from_dict(data, source)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
