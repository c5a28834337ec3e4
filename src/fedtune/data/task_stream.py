"""Lifelong tasks: each client's training data as a stream of tasks over rounds, with a bounded
replay memory (``data.schedule``; docs/decentralized.md, "Task streams").

A record's task is its ``category`` matched against ``data.schedule.tasks`` (fnmatch patterns in
stream order, the first match wins; default: every distinct category, sorted). A client meets
its own tasks in that order, ``rounds_per_task`` rounds each (its last task stays until the run
ends), training on the current task's records plus a replay buffer of at most ``replay`` records
of its earlier tasks. The buffer is what a client with bounded memory could keep: at each task
change it keeps an equal share per past task, drawn from its previous buffer and the task just
finished (class-balanced reservoir), so it never needs the records it did not keep. Every draw
is a function of (seed, client, task), so ``--resume`` needs no saved state.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass

from pydantic import Field

from fedtune.schema import Section


class TaskStreamConfig(Section):
    """``data.schedule``: the order of tasks, how long each lasts, and the replay memory."""

    tasks: list[str] | None = None  # fnmatch patterns over records' category, in stream order
    rounds_per_task: int = Field(2, ge=1)
    replay: int = Field(0, ge=0)  # records of past tasks each client keeps (0: no memory)


def task_names(cfg: TaskStreamConfig, categories: list[str]) -> list[str]:
    """The run's tasks in stream order: the patterns, or every distinct category sorted."""
    return list(cfg.tasks) if cfg.tasks else sorted(set(categories))


def task_index(names: list[str], category: str, where: str) -> int:
    """The first task whose pattern matches ``category``; ValueError naming ``where`` if none."""
    for i, pattern in enumerate(names):
        if fnmatch.fnmatchcase(category, pattern):
            return i
    raise ValueError(f"{where}: category {category!r} matches no task of data.schedule.tasks {names}")


@dataclass
class TaskStream:
    """One client's stream: the task of each of its training examples (in token order)."""

    client_id: int
    names: list[str]  # the task names (patterns or categories) its indices refer to
    tasks: list[int]  # task index (into ``names``) per example
    rounds_per_task: int
    replay: int
    seed: int

    @property
    def order(self) -> list[int]:
        """This client's tasks, in stream order."""
        return sorted(set(self.tasks))

    @property
    def order_names(self) -> list[str]:
        """This client's tasks by name, in stream order."""
        return [self.names[i] for i in self.order]

    def position(self, round: int) -> int:
        """Which of its tasks (0-based position in ``order``) the client trains in ``round``."""
        return min(round // self.rounds_per_task, len(self.order) - 1)

    def current(self, round: int) -> int:
        return self.order[self.position(round)]

    def memory(self, position: int) -> list[int]:
        """The replay buffer while the client trains its ``position``-th task: ≤ ``replay``
        examples, an equal share of each earlier task (kept from the previous buffer)."""
        buffer: list[int] = []
        for k in range(1, position + 1):
            rng = random.Random(f"{self.seed}/{self.client_id}/{k}/replay")
            finished = [i for i, t in enumerate(self.tasks) if t == self.order[k - 1]]
            keep_old = self.replay * (k - 1) // k
            buffer = rng.sample(buffer, min(keep_old, len(buffer)))
            buffer += rng.sample(finished, min(self.replay - len(buffer), len(finished)))
        return sorted(buffer)

    def pool(self, round: int) -> list[int]:
        """The examples the client may draw from in ``round``: its current task and its buffer."""
        position = self.position(round)
        now = [i for i, t in enumerate(self.tasks) if t == self.order[position]]
        return now + self.memory(position)


def task_stream(cfg: TaskStreamConfig | None, client_id: int, records: list[dict], dropped: list[int],
                seed: int) -> TaskStream | None:
    """The stream of a client whose training ``records`` were tokenized without ``dropped``. Its
    task indices are into the names its own records give (a node sees no one else's); the order
    of its tasks, all that the stream uses, is the run's order either way."""
    if cfg is None:
        return None
    gone = set(dropped)
    kept = {i: r.get("category", "") for i, r in enumerate(records) if i not in gone}  # record index -> category
    names = task_names(cfg, list(kept.values()))
    tasks = [task_index(names, c, f"data.schedule: client {client_id}'s training record {i}") for i, c in kept.items()]
    return TaskStream(client_id, names, tasks, cfg.rounds_per_task, cfg.replay, seed)
