"""Write a partition as files, one per party, so a real deployment hands each its own data.

Layout (readable back: ``source: DIR/train`` is a natural partition with the same clients):
  DIR/train/<client>.jsonl   DIR/test/<client>.jsonl   DIR/global_test.jsonl   DIR/manifest.json
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fedtune.data.federated import FederatedData


def safe_name(name: str) -> str:
    """A client name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "client"


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_split(data: FederatedData, out: Path) -> dict:
    """Write every client's train/test records and the global test set; returns the manifest."""
    out = Path(out)
    files, used = [], set()
    for c in data.clients:
        stem = safe_name(c.name)
        while stem in used:  # two names that sanitize alike
            stem += "_"
        used.add(stem)
        _write_jsonl(out / "train" / f"{stem}.jsonl", c.train)
        _write_jsonl(out / "test" / f"{stem}.jsonl", c.test)
        files.append({"client": c.name, "train": f"train/{stem}.jsonl", "test": f"test/{stem}.jsonl",
                      "train_records": len(c.train), "test_records": len(c.test)})
    _write_jsonl(out / "global_test.jsonl", data.global_test)
    manifest = {"kind": data.kind, "clients": files, "global_test": "global_test.jsonl",
                "global_test_records": len(data.global_test), "report": data.report}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest
