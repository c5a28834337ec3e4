"""Read raw rows from wherever the user keeps them: JSON, JSON Lines, CSV, Parquet (each optionally
gzipped), a directory of such files, or a Hugging Face dataset (``hf:org/name``).

We parse JSON/JSONL/CSV ourselves so that a bad byte or line is reported with its file and line
number (``datasets``' JSON builder reports an Arrow error without either); Parquet goes through
Arrow and Hugging Face datasets through ``datasets.load_dataset`` (which uses its local cache when
offline). A FedLLM-Bench federated file — one JSON object mapping client key → list of samples —
comes back with ``groups`` set, so it can be read as a natural partition.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


class DataError(ValueError):
    """Unreadable or invalid input data; the message names the file, line or field."""


@dataclass
class Table:
    """Raw rows, where each came from (for error messages), and optional per-row client groups."""

    rows: list[dict] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    groups: list[str] | None = None  # client key per row (federated file, directory of client files)

    def extend(self, other: "Table", group: str) -> None:
        """Append ``other``; its rows keep their own groups, or all get ``group``."""
        self.rows += other.rows
        self.where += other.where
        self.groups = (self.groups or []) + (other.groups or [group] * len(other.rows))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()


def _text(path: Path) -> str:
    """The whole file as UTF-8 text; a bad byte is reported with its line number."""
    raw = gzip.decompress(path.read_bytes()) if path.name.lower().endswith(".gz") else path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); "
                        "re-encode the file as UTF-8") from None


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object per record, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> Table:
    table = Table()
    for n, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            table.rows.append(_object(json.loads(line), where))
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON at column {e.colno}: {e.msg}") from None
        table.where.append(where)
    return table


def read_json(path: Path) -> Table:
    """A list of records, or a federated object {client key: [records]} (FedLLM-Bench)."""
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
    table = Table()
    if isinstance(data, list):
        table.rows = [_object(r, f"{path}: record {i}") for i, r in enumerate(data)]
        table.where = [f"{path}: record {i}" for i in range(len(data))]
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        table.groups = []
        for key, samples in data.items():
            for i, r in enumerate(samples):
                where = f"{path}: client {key!r} record {i}"
                table.rows.append(_object(r, where))
                table.where.append(where)
                table.groups.append(str(key))
    else:
        raise DataError(f"{path}: expected a JSON list of records or an object mapping each client "
                        "to its list of records (FedLLM-Bench)")
    return table


def read_csv(path: Path) -> Table:
    table = Table()
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row:
            raise DataError(f"{where}: more values than the {len(reader.fieldnames)} header columns")
        table.rows.append(row)
        table.where.append(where)
    return table


def read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - Arrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet: {e}") from None
    return Table(rows, [f"{path}: row {i}" for i in range(len(rows))])


def read_txt(path: Path) -> Table:
    """A plain-text file: one document (a ``text`` row) per non-empty line."""
    rows, where = [], []
    for n, line in enumerate(_text(path).splitlines(), 1):
        if line.strip():
            rows.append({"text": line.strip()})
            where.append(f"{path}:{n}")
    return Table(rows, where)


READERS = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_csv, ".parquet": read_parquet, ".txt": read_txt}


def read_file(path: Path) -> Table:
    suffix = _suffix(path)
    if suffix not in READERS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(SUFFIXES)} "
                        "(optionally .gz)")
    return READERS[suffix](path)


def read_directory(path: Path) -> Table:
    """Every supported file under ``path`` (sorted); with several files, each file is a group.
    Plain-text files count only in a directory of nothing else (a party's documents): beside
    structured data files a README.txt or notes.txt is not data."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in SUFFIXES)
    if any(_suffix(p) != ".txt" for p in files):
        files = [p for p in files if _suffix(p) != ".txt"]
    if not files:
        raise DataError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
    if len(files) == 1:
        return read_file(files[0])
    table = Table()
    for f in files:
        table.extend(read_file(f), str(f.relative_to(path)).split(".")[0])
    return table


def read_hf(name: str, subset: str | None, split: str, revision: str | None) -> Table:
    """A Hugging Face dataset through ``datasets`` (its cache is used when offline)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, subset, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - network, missing split, bad name: all one message
        raise DataError(f"hf:{name}: cannot load split {split!r}: {str(e).splitlines()[0]}") from None
    return Table(ds.to_list(), [f"hf:{name}[{split}] row {i}" for i in range(len(ds))])


def fingerprint(source: str) -> list:
    """What identifies the source's content cheaply: path, size and mtime of every file."""
    if source.startswith("hf:"):
        return [source]
    path = Path(source)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def read_source(source: str, subset: str | None = None, split: str = "train", revision: str | None = None,
                limit: int | None = None) -> Table:
    if source.startswith("hf:"):
        table = read_hf(source[3:], subset, split, revision)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{source}: data source not found")
        table = read_directory(path) if path.is_dir() else read_file(path)
    if not table.rows:
        raise DataError(f"{source}: contains no records")
    if limit is not None:
        table = Table(table.rows[:limit], table.where[:limit], table.groups[:limit] if table.groups else None)
    return table
