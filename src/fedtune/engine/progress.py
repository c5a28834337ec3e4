"""Progress display for long runs: rounds, clients and steps as rich progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    """A thin wrapper so the engine can report without knowing about terminals."""

    def __init__(self, enabled: bool = True, console: Console | None = None, label: str = "rounds"):
        self.enabled, self.label = enabled, label
        self._bar = None
        if enabled:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console or Console(stderr=True), transient=False,
            )

    def start_rounds(self, total: int, done: int) -> None:
        if self._bar:
            self._bar.start()
            self._rounds = self._bar.add_task(self.label, total=total, completed=done, info="")

    def start_client(self, client_id: int, steps: int) -> None:
        if self._bar:
            self._bar.update(self._rounds, info=f"client {client_id} ({steps} steps)")

    def round_done(self, row: dict) -> None:
        if self._bar:
            ev = row.get("eval", {}).get("global")
            info = f"loss {row['train_loss']:.3f}" if row.get("train_loss") is not None else ""
            if ev:
                info += f"  EM {ev['exact_match']:.1%}"
            self._bar.update(self._rounds, info=info)

    def advance_round(self) -> None:
        if self._bar:
            self._bar.advance(self._rounds)

    def stop(self) -> None:
        if self._bar:
            self._bar.stop()
