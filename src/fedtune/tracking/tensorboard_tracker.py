"""TensorBoard: every round's metrics as scalars (step = round), the config as text (its YAML) and
as hparams, and at the end summary.json as text, in one log directory (torch's SummaryWriter).

A resumed run reopens the directory with ``purge_step`` at the last row metrics.jsonl kept and
logs that row again (with the config, when it is round 0's): TensorBoard drops what the earlier
process logged from that step on, so the rounds it re-runs are not doubled. Every row before it
was flushed when it was logged, so the event data ends as an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedtune.schema import Section
from fedtune.tracking.registry import (
    TRACKERS,
    Tracker,
    config_leaves,
    flatten,
    import_backend,
)

# the scalars the hparams dashboard shows beside each run's config
HPARAM_METRICS = ("train_loss", "eval/global/exact_match", "eval/global/loss")


class TensorBoardParams(Section):
    log_dir: str | None = None  # default <run dir>/tensorboard


@TRACKERS.register("tensorboard", TensorBoardParams,
                   "TensorBoard: each round's metrics as scalars, the config as text and hparams")
class TensorBoardTracker(Tracker):
    requires = {"tensorboard": "tensorboard"}

    def start(self, cfg, run_dir: Path, resume: bool, rows: list[dict]) -> None:
        board = import_backend("torch.utils.tensorboard", "tensorboard", "tensorboard")
        rows = rows if resume else []
        purge = rows[-1]["round"] if rows else 0
        self.last_step = 0  # the round of the last row logged (the summary's step)
        log_dir = self.params.log_dir or str(run_dir / "tensorboard")
        self.writer = board.SummaryWriter(log_dir, purge_step=purge if resume else None)
        if purge == 0:
            self._log_config(cfg)
        for row in rows:
            if row["round"] >= purge:
                self.log_row(row)
        self.writer.flush()

    def _log_config(self, cfg) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)
        for summary in hparams(config_leaves(cfg), dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary, 0)

    def log_row(self, row: dict) -> None:
        for key, value in flatten(row).items():
            self.writer.add_scalar(key, value, row["round"])
        self.last_step = row["round"]
        self.writer.flush()  # a resume relies on every earlier row being on disk

    def finish(self, summary: dict, run_dir: Path) -> None:
        text = json.dumps(summary, indent=2)
        self.writer.add_text("summary", "\n".join("    " + line for line in text.splitlines()), self.last_step)

    def close(self, error: BaseException | None = None) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
