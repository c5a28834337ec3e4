"""The experiment config: pydantic models of the YAML, with one-line errors that name the key.

``load_config(path, overrides)`` is the only entry point the CLI uses. Unknown keys are errors
(with the closest valid key suggested), never silently ignored.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A config problem, already phrased as one line for the user."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # "all-linear" or an explicit list such as [q_proj, v_proj].
    target_modules: str | list[str] = "all-linear"


class ModelConfig(Section):
    # A built-in alias (smollm2-135m-instruct, tiny-random), a Hugging Face id, a local
    # directory, or a path to a .gguf file.
    name: str = "smollm2-135m-instruct"
    gguf_file: str | None = None  # file name inside `name` when `name` is a directory or HF id
    revision: str | None = None
    lora: LoraConfig = LoraConfig()


class SuiteConfig(Section):
    """The built-in federated task suite (see fedtune.data.suite)."""

    entities_per_client: int = Field(6, ge=1)
    rules: list[str] | None = None  # skill rules in play; None = as many as clients
    rule_concentration: float = Field(0.0, ge=0)  # 0 = pathological (one rule per client); >0 = Dirichlet alpha
    skill_train_per_client: int = Field(24, ge=0)
    test_per_rule: int = Field(8, ge=1)
    noise_rate: list[float] | float = 0.0  # share of corrupted responses, per client or for all
    flip_rate: float = Field(0.0, ge=0, le=1)  # preference pairs whose chosen/rejected are swapped
    forbidden_topic: str | None = None  # a topic whose questions get refusals (safety experiments)


class PartitionConfig(Section):
    """How one pool of records is split into clients (flwr-datasets partitioners; docs/data.md)."""

    # iid | dirichlet (alpha over `by`) | pathological (classes_per_client of `by`) | shard |
    # size (linear / exponential / explicit sizes) | natural (one client per value of `by`,
    # or per key of a federated file)
    # Default: natural for a per-client source (federated file, directory of files), else iid.
    method: Literal["iid", "dirichlet", "pathological", "shard", "size", "natural"] | None = None
    by: str = "category"  # the label column (dirichlet/pathological/shard) or client-id column (natural)
    alpha: float = Field(0.5, gt=0)
    min_partition_size: int = Field(1, ge=0)  # dirichlet: resample until every client has this many
    classes_per_client: int = Field(2, ge=1)
    shards_per_client: int = Field(2, ge=1)
    size_skew: Literal["linear", "exponential"] = "linear"
    sizes: list[int] | None = None  # size: explicit records per client (overrides size_skew)
    seed: int | None = None  # defaults to the run seed


class ExactDedupOp(Section):
    """Drop records whose normalized text (lowercase, whitespace collapsed) was already seen."""

    op: Literal["exact_dedup"]
    lowercase: bool = True


class NearDedupOp(Section):
    """MinHash-LSH near-duplicate removal (Data-Juicer document_minhash_deduplicator defaults)."""

    op: Literal["near_dedup"]
    threshold: float = Field(0.7, gt=0, le=1)  # Jaccard similarity
    num_perm: int = Field(256, ge=16)
    window: int = Field(5, ge=1)  # word n-gram shingles


class LengthOp(Section):
    """Keep records whose text length in characters is within [min, max]."""

    op: Literal["length"]
    min: int = Field(0, ge=0)
    max: int | None = None


class TokenLengthOp(Section):
    """Keep records whose token count (model tokenizer, chat template applied) is within [min, max]."""

    op: Literal["token_length"]
    min: int = Field(0, ge=0)
    max: int | None = None


class AlnumRatioOp(Section):
    """Keep records whose share of alphanumeric characters is within [min, max] (Data-Juicer)."""

    op: Literal["alnum_ratio"]
    min: float = Field(0.25, ge=0, le=1)
    max: float = Field(1.0, ge=0, le=1)


class CharRepetitionOp(Section):
    """Drop records whose character n-gram repetition ratio exceeds max (Data-Juicer)."""

    op: Literal["char_repetition"]
    rep_len: int = Field(10, ge=1)
    max: float = Field(0.5, ge=0, le=1)


class FlaggedWordsOp(Section):
    """Drop records whose share of flagged words exceeds max_ratio (Data-Juicer)."""

    op: Literal["flagged_words"]
    words: list[str] | None = None  # None = the built-in English list
    words_file: str | None = None  # one word per line, added to `words`
    max_ratio: float = Field(0.0, ge=0, le=1)


class DifficultyOp(Section):
    """Score every record with a registered scorer (e.g. IFD) and keep a range or a share."""

    op: Literal["difficulty"]
    scorer: str = "ifd"
    min: float | None = None
    max: float | None = None
    keep_fraction: float | None = Field(None, gt=0, le=1)  # keep the highest-scoring share
    batch_size: int = Field(16, ge=1)


PipelineOp = Annotated[
    ExactDedupOp | NearDedupOp | LengthOp | TokenLengthOp | AlnumRatioOp | CharRepetitionOp | FlaggedWordsOp
    | DifficultyOp,
    Field(discriminator="op"),
]

FORMATS = ("auto", "alpaca", "instruction-response", "question-answer", "sharegpt", "messages", "preference",
           "hh-rlhf")


class DataConfig(Section):
    # None = the built-in suite. Otherwise a file (.json .jsonl .csv .parquet, optionally .gz), a
    # directory of such files, or a Hugging Face dataset `hf:org/name` (see subset/split/revision).
    source: str | None = None
    format: Literal[FORMATS] = "auto"
    # Your column -> the format's field, e.g. {question: instruction, answer: output}.
    columns: dict[str, str] = {}
    subset: str | None = None  # Hugging Face config name
    split: str = "train"  # Hugging Face split
    revision: str | None = None
    limit: int | None = Field(None, ge=1)  # read only the first N records
    test_source: str | None = None  # a separate held-out global test set (same format)
    global_test: int | float = 0.1  # else: records (int) or share (float) held out before partitioning
    test_fraction: float = Field(0.1, ge=0, lt=1)  # per-client local test split
    partition: PartitionConfig = PartitionConfig()
    pipeline: list[PipelineOp] = []  # processing applied to every client's training data, in order
    empty_client: Literal["error", "skip"] = "error"  # a client left with no training record
    invalid_records: Literal["error", "skip"] = "error"  # a row that is not a valid record: stop, or drop and count
    template: str | None = None  # None = the model's own chat template; else alpaca, chatml, vicuna
    suite: SuiteConfig = SuiteConfig()

    @field_validator("global_test")
    @classmethod
    def _share_or_count(cls, v):
        if isinstance(v, float) and not 0 <= v < 1:
            raise ValueError("a share must be in [0, 1); use an int for a count")
        if isinstance(v, int) and v < 0:
            raise ValueError("a count must be >= 0")
        return v
    max_length: int = Field(256, ge=8)  # tokens; longer examples are truncated and counted
    system_prompt: str | None = "Answer with the answer only."


class FederationConfig(Section):
    num_clients: int = Field(4, ge=1)
    # An int is a count; a float in (0, 1] is a fraction of num_clients (at least one client).
    clients_per_round: int | float = 1.0
    rounds: int = Field(5, ge=1)
    sampling_seed: int | None = None  # defaults to the run seed

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


ALGORITHMS = ("fedavg", "local", "centralized", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi", "fedadam")


class AlgorithmConfig(Section):
    """FL algorithm and its parameters (docs/algorithms.md has each one's formula and source)."""

    name: Literal[ALGORITHMS] = "fedavg"
    weighting: Literal["examples", "uniform"] = "examples"  # client weights in every average
    server_lr: float = Field(1.0, gt=0)  # FedAvg / FedProx / FedAvgM / SCAFFOLD global step size
    prox_mu: float = Field(0.01, ge=0)  # FedProx proximal coefficient (OpenFedLLM default)
    server_momentum: float = Field(0.9, ge=0, lt=1)  # FedAvgM momentum (Hsu et al. 2019)
    eta: float = Field(1e-2, gt=0)  # FedOpt server learning rate
    tau: float = Field(1e-3, gt=0)  # FedOpt adaptivity (epsilon)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    bias_correction: bool = False  # FedAdam: Adam's bias correction of eta (as Flower does)
    variant: Literal["reddi", "openfedllm"] = "reddi"  # FedOpt/FedAvgM: the paper, or OpenFedLLM's code
    scaffold_option: Literal[1, 2] = 2  # control-variate update: I (gradient at x) or II (from the model delta)


class TrainConfig(Section):
    objective: Literal["sft", "dpo", "beta-dpo", "dr-dpo"] = "sft"
    # Preference objectives (docs/preference.md). The reference policy is the base model (LoRA
    # disabled) or the adapter the run/stage started from (e.g. the SFT stage's result).
    reference: Literal["base", "start"] = "base"
    dpo_beta: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # conservative DPO
    beta_dpo_rho: float = Field(0.2, ge=0, lt=1)  # β-DPO: share of each batch filtered out
    beta_dpo_a: float = Field(0.6, ge=0)  # β-DPO: β sensitivity to the margin
    beta_dpo_gamma: float = Field(0.9, ge=0, lt=1)  # β-DPO: EMA factor of the margin statistics
    dr_dpo_beta_prime: float = Field(1.0, gt=0)  # Dr. DPO: β′
    steps: int = Field(5, ge=1)  # optimizer steps per client per round
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # across rounds, constant inside a round (OpenFedLLM)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = 1.0
    bf16: Literal["auto", "on", "off"] = "auto"  # autocast to bf16 on CPU; auto = only with bf16 matrix units
    optimizer_state: Literal["fresh", "persist"] = "fresh"  # AdamW state reset each round, or kept per client
    threads: int | None = None  # torch intra-op threads; None = torch's default

    @property
    def record_kind(self) -> str:
        """The records this objective trains on: "sft" examples or "preference" pairs."""
        return "sft" if self.objective == "sft" else "preference"


class EvalConfig(Section):
    every: int = Field(1, ge=0)  # rounds between evaluations; 0 = only at the end
    per_client: bool = False  # also evaluate on each client's own test split
    batch_size: int = Field(32, ge=1)


class OutputConfig(Section):
    dir: str | None = None  # default runs/<name>
    checkpoint_every: int = Field(1, ge=1)


class RunConfig(Section):
    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    federation: FederationConfig = FederationConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()
    # Multi-stage runs: each entry overrides sections of this config for one stage, e.g.
    # [{train: {objective: sft}}, {train: {objective: dpo, reference: start}, federation: {rounds: 3}}].
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
    if err["type"] == "extra_forbidden":
        owner = _model_at(RunConfig, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1) if owner else []
        hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
        return f"{source}: unknown key '{key}'{hint}"
    return f"{source}: '{key}': {err['msg']} (got {err.get('input')!r})"


def _deep_merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``dotted='a.b'``, creating sections as needed."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
        node = nxt
    node[parts[-1]] = value


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
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e.errors()[0], source)) from None


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
    for key, value in parse_overrides(list(overrides)):
        set_path(data, key, value)
    return from_dict(data, source)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
