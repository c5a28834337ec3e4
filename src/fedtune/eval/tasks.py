"""Evaluation tasks: the global model on a dataset of its own (``eval.tasks``).

Metrics (``eval.metrics``) score the run's own test sets, globally and per client. A task brings
its own data — a local file, a directory of them, an ``hf:`` dataset, or an lm-evaluation-harness
task — and runs at the final evaluation and every ``eval.tasks_every`` rounds (and in ``fedtune
eval --task``). One file per task type in this package, registered with
``@TASKS.register(TYPE, Params)``: ``run(evaluator, items)`` returns a flat dict of figures and
writes what it scored item by item (generations, a judge's raw output) to ``items``, the file
``<run>/eval/<label>/round_<r>.jsonl``, so every figure can be traced to its answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from fedtune.atomic_write import write_text_atomic
from fedtune.data.sources import DataError, Table, read_source
from fedtune.schema import Registry, Section

TASKS = Registry("eval task", tag="type")


class TaskParams(Section):
    """What every task takes."""

    name: str | None = None  # its label in metrics.jsonl and the report; default: type and file name
    limit: int | None = Field(None, ge=1)  # score only the first N items (a quick look)


class FileTaskParams(TaskParams):
    """A task over one dataset: a .jsonl/.json/.csv/.parquet file, a directory of them, hf:NAME,
    or ``suite``: the run's own global test set (fields ``question``, ``answer``, ``category``)."""

    path: str
    split: str = "test"  # the split of an hf: dataset


class QuestionTaskParams(FileTaskParams):
    """A task that asks the model each item's question."""

    question_field: str = "question"
    template: str = "{question}"  # the user turn; {field} is any field of the item


class EvalTask:
    """Base of every task type."""

    def __init__(self, params: TaskParams):
        self.params = params

    @property
    def label(self) -> str:
        if self.params.name:
            return self.params.name
        path = getattr(self.params, "path", None)
        stem = Path(path.removeprefix("hf:")).name.split(".")[0] if path else ""
        return f"{self.params.type}_{stem}" if stem else self.params.type

    def table(self, evaluator) -> Table:
        """The task's rows (``limit`` applied), each with where it came from for error messages."""
        p = self.params
        if p.path == "suite":
            return suite_table(evaluator.ws.data.global_test, p.limit)
        try:
            return read_source(p.path, split=p.split, limit=p.limit)
        except DataError as e:
            raise DataError(f"eval task {self.label}: {e}") from None

    def run(self, evaluator, items: "ItemLog") -> dict:
        raise NotImplementedError


def suite_table(records: list[dict], limit: int | None) -> Table:
    """The run's global test records as question/answer rows (SFT: the last user turn and the
    reply; preference: the prompt and the chosen answer)."""
    rows = []
    for rec in records[:limit]:
        turns = rec.get("messages") or [*rec["prompt"], {"role": "assistant", "content": rec["chosen"]}]
        question = next(m["content"] for m in reversed(turns) if m["role"] == "user")
        answer = next(m["content"] for m in reversed(turns) if m["role"] == "assistant")
        rows.append({"question": question, "answer": answer, "category": rec.get("category", "")})
    return Table(rows, [f"suite test item {i}" for i in range(len(rows))])


def render(template: str, row: dict, where: str) -> str:
    """``template`` with each ``{field}`` replaced by the item's value (a one-line error naming
    the item when it lacks one)."""
    try:
        return template.format_map(row)
    except KeyError as e:
        raise ValueError(f"{where}: the task's template needs field {e.args[0]!r}; this item has "
                         f"{', '.join(sorted(row))}") from None


def questions(table: Table, params: QuestionTaskParams) -> list[str]:
    """Each item's user turn: the template filled with its fields (its question field required)."""
    key = params.question_field
    return [render(params.template, {key: field(row, key, where), **row}, where)
            for row, where in zip(table.rows, table.where)]


def field(row: dict, key: str, where: str):
    """``row[key]``, or a one-line error naming the item and the field it lacks."""
    if key not in row or row[key] is None:
        raise DataError(f"{where}: no field {key!r} (the task's fields are set by its *_field keys; "
                        f"this item has {', '.join(sorted(row)) or 'none'})")
    return row[key]


class ItemLog:
    """The per-item records of one task at one evaluation (nothing is written without a directory)."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, items: list[dict]) -> None:
        if self.path is None:
            return
        write_text_atomic(self.path, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
