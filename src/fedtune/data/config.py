"""The ``data`` config section: sources and formats, the partition into clients, the processing
pipeline (one op per file under ``data/ops``), the built-in suite and the canaries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from fedtune.chosen_clients import chosen_clients
from fedtune.data.canaries import CanaryConfig
from fedtune.data.ops import OPS
from fedtune.data.task_stream import TaskStreamConfig
from fedtune.schema import Section


class SuiteConfig(Section):
    """The built-in federated task suite (see fedtune.data.suite)."""

    entities_per_client: int = Field(6, ge=1)
    rules: list[str] | None = None  # skill rules in play; None = as many as clients
    rule_concentration: float = Field(0.0, ge=0)  # 0 = pathological (one rule per client); >0 = Dirichlet alpha
    skill_train_per_client: int = Field(24, ge=0)
    test_per_rule: int = Field(8, ge=1)
    noise_rate: list[float] | float = 0.0  # share of corrupted responses, per client or for all
    flip_rate: float = Field(0.0, ge=0, le=1)  # preference pairs whose chosen/rejected are swapped
    # Each client's facts as raw text (a biography per person) instead of QA pairs, for synthesis
    # (`synth: {method: u2s}`); the tests still ask the questions.
    documents: bool = False
    forbidden_topic: str | None = None  # a topic whose questions get refusals (safety experiments)
    # Malicious data holders (the safety attack): their whole training set is forbidden-topic
    # questions answered instead of refused. Ids, or a share of the clients drawn from the seed.
    malicious_clients: list[int] = []
    malicious_rate: float = Field(0.0, ge=0, lt=1)
    # Clustered clients: client c is in cluster c % clusters. Every cluster sees the same rule
    # titles, but cluster k answers each title with a different function of the same arity (the
    # rule rotated by k within its arity group), so clusters interfere and a cluster's clients
    # help each other. 1 = no clusters (the suite as before).
    clusters: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _malicious_needs_topic(self):
        if (self.malicious_clients or self.malicious_rate) and not self.forbidden_topic:
            raise ValueError("malicious clients answer forbidden-topic questions: set data.suite.forbidden_topic too")
        if self.malicious_clients and self.malicious_rate:
            raise ValueError("set data.suite.malicious_clients (ids) or data.suite.malicious_rate (a share), not both")
        return self

    def malicious(self, num_clients: int, seed: int) -> list[int]:
        """The malicious clients' ids (the listed ones, or the share drawn from the seed)."""
        if self.malicious_clients:
            bad = [c for c in self.malicious_clients if not 0 <= c < num_clients]
            if bad:
                raise ValueError(f"data.suite.malicious_clients: client {bad[0]} does not exist ({num_clients} clients)")
            return chosen_clients(self.malicious_clients, num_clients, seed, "malicious")
        return chosen_clients(self.malicious_rate, num_clients, seed, "malicious") if self.malicious_rate else []

    def cluster_of(self, client: int) -> int:
        """Client ``client``'s cluster: ``client % clusters`` (clients 0, k, 2k, ... form cluster 0)."""
        return client % self.clusters


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


FORMATS = ("auto", "alpaca", "instruction-response", "question-answer", "sharegpt", "messages", "preference",
           "hh-rlhf", "text")


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
    pipeline: list[OPS.choice()] = []  # processing applied to every client's training data, in order
    empty_client: Literal["error", "skip"] = "error"  # a client left with no training record
    invalid_records: Literal["error", "skip"] = "error"  # a row that is not a valid record: stop, or drop and count
    template: str | None = None  # None = the model's own chat template; else alpaca, chatml, vicuna
    suite: SuiteConfig = SuiteConfig()
    canaries: CanaryConfig | None = None  # secrets planted to measure memorization (docs/privacy.md)
    # Lifelong tasks: each client meets its records' categories as a stream of tasks, with a
    # bounded replay memory (fedtune.data.task_stream; docs/decentralized.md)
    schedule: TaskStreamConfig | None = None

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
