"""Where safety evaluation gets its harmful prompts, and the answers to them (generated once per
evaluation and shared by every safety metric).

``eval.safety.prompts``: a CSV in AdvBench's format (a ``goal`` column), or a JSON / JSONL file of
records with a ``goal``, ``instruction`` or ``prompt`` field (a string). Unset, the run's global
test records of category ``forbidden`` (the built-in suite's forbidden topic) are the prompts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import Field

from fedtune.schema import ConfigError, Section
from fedtune.synth.generation import GENERATORS

PROMPT_FIELDS = ("goal", "instruction", "prompt")


class SafetyEvalConfig(Section):
    prompts: str | None = None  # AdvBench CSV (`goal`) or JSON/JSONL; None = the suite's forbidden-topic tests
    limit: int | None = Field(None, ge=1)  # use only the first N prompts
    # who answers: the evaluated model (local backend, the run's model); answers are short on purpose
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 32}


def read_prompts(path: str | Path, key: str = "eval.safety.prompts") -> list[str]:
    """The prompts of an AdvBench-style CSV, a JSON/JSONL file or a .txt file (one per line); a
    bad row names file and line, a missing file the config ``key`` that named it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    if path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "goal" not in (reader.fieldnames or []):
                raise ConfigError(f"{path}: no 'goal' column (AdvBench format); columns: {reader.fieldnames}")
            rows = [(i + 2, row["goal"]) for i, row in enumerate(reader)]
    elif path.suffix == ".jsonl":
        rows = [(i + 1, json.loads(line)) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
                if line.strip()]
    else:
        rows = [(i + 1, r) for i, r in enumerate(json.loads(path.read_text(encoding="utf-8")))]
    prompts = []
    for line, row in rows:
        text = row if isinstance(row, str) else next((row[k] for k in PROMPT_FIELDS if isinstance(row, dict) and k in row), None)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{path}:{line}: no prompt (a non-empty string in one of {', '.join(PROMPT_FIELDS)})")
        prompts.append(text)
    return prompts


def suite_forbidden_prompts(records: list[dict]) -> list[str]:
    """The user turns of the test records whose category is ``forbidden``."""
    return [r["messages"][0]["content"] if "messages" in r else r["prompt"][0]["content"]
            for r in records if r.get("category") == "forbidden"]
