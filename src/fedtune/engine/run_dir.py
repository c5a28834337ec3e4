"""The run directory contract: config.yaml, metrics.jsonl, checkpoints/, adapter/, summary.json.

Checkpoints are written to a temporary directory and renamed into place, then a ``LATEST`` file
is replaced atomically, so a crash at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from fedtune import adapter_state
from fedtune.adapter_state import AdapterState
from fedtune.atomic_write import write_text_atomic
from fedtune.config import RunConfig, dump_config
from fedtune.tracking import check_available


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        self.clients = self.path / "clients"

    def start(self, cfg: RunConfig, resume: bool) -> None:
        """Create the directory; refuse to silently overwrite a finished or partial run."""
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            raise FileExistsError(f"{self.path}: run directory exists; pass --resume to continue it or choose --output")
        check_available(cfg.tracking)  # a missing backend package is named before anything is written
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / "config.yaml", dump_config(cfg))

    # ------------------------------------------------------------------ metrics

    def append_metrics(self, row: dict) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_round: int, restore: dict | None = None) -> None:
        """Drop rows of rounds after the checkpoint we resume from (they will be re-run). ``restore``
        is the checkpointed round's own row, written back if a crash came before it was appended."""
        rows = [r for r in self.read_metrics() if r["round"] <= last_round]
        if restore is not None and not any(r["round"] == last_round for r in rows):
            rows.append(restore)
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # --------------------------------------------------------------- checkpoints

    def save_checkpoint(self, round: int, global_adapter: AdapterState, strategy_state: dict, extra: dict) -> None:
        final = self.checkpoints / f"round_{round:05d}"
        tmp = self.checkpoints / f".round_{round:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        adapter_state.save(global_adapter, tmp / "global_adapter.safetensors")
        adapter_state.save(strategy_state or {"_empty": torch.zeros(0)}, tmp / "strategy.safetensors")
        # The engine's own RNGs are derived from (seed, round, client); torch's global state is kept too.
        adapter_state.save({"torch": torch.get_rng_state()}, tmp / "rng.safetensors")
        (tmp / "meta.json").write_text(json.dumps({"round": round, **extra}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text_atomic(self.checkpoints / "LATEST", final.name)
        for old in self.checkpoints.glob("round_*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def write_synthesized(self, data) -> None:
        """``synth/<client>.jsonl``: every synthesized training pair with what it was made from."""
        for c in data.clients:
            rows = [r for r in c.train + c.test if "synth" in r]
            if rows:
                path = self.path / "synth" / f"{c.name}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def _latest(self) -> Path | None:
        latest = self.checkpoints / "LATEST"
        return self.checkpoints / latest.read_text().strip() if latest.exists() else None

    def latest_adapter(self) -> AdapterState:
        """The global adapter of the latest checkpoint (fedtune's own state; no RNG restored)."""
        return adapter_state.load(self._latest() / "global_adapter.safetensors")

    def load_checkpoint(self) -> tuple[int, AdapterState, dict, dict] | None:
        ckpt = self._latest()
        if ckpt is None:
            return None
        meta = json.loads((ckpt / "meta.json").read_text())
        strategy = adapter_state.load(ckpt / "strategy.safetensors")
        strategy.pop("_empty", None)
        rng = adapter_state.load(ckpt / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        return meta["round"], adapter_state.load(ckpt / "global_adapter.safetensors"), strategy, meta

    # --------------------------------------------------------------- summary

    def write_json(self, name: str, data: dict) -> None:
        write_text_atomic(self.path / name, json.dumps(data, indent=2))

