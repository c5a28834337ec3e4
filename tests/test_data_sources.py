"""Reading every supported source, and the one-line errors for bad input (file, line, field)."""

from __future__ import annotations

import gzip
import json

import pytest

from fedtune.config import from_dict
from fedtune.data.build import read_records
from fedtune.data.records import RecordError
from fedtune.data.sources import DataError, read_source

ALPACA = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
          {"instruction": "Name the colour.", "input": "grass", "output": "green"}]


def _cfg(source, **data):
    return from_dict({"data": {"source": str(source), **data}})


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_json_gz_csv_parquet_give_the_same_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _jsonl(tmp_path / "a.jsonl", ALPACA)
    (tmp_path / "a.json").write_text(json.dumps(ALPACA))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress((tmp_path / "a.jsonl").read_bytes()))
    (tmp_path / "a.csv").write_text("instruction,input,output\nAdd 2 and 3.,,5\nName the colour.,grass,green\n")
    pq.write_table(pa.Table.from_pylist(ALPACA), tmp_path / "a.parquet")
    results = {}
    for name in ("a.jsonl", "a.json", "a.jsonl.gz", "a.csv", "a.parquet"):
        records, *_ = read_records(_cfg(tmp_path / name), str(tmp_path / name), "sft")
        results[name] = records
    expected = [{"messages": [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
                 "category": ""},
                {"messages": [{"role": "user", "content": "Name the colour.\n\ngrass"},
                              {"role": "assistant", "content": "green"}], "category": ""}]
    for name, records in results.items():
        assert records == expected, name


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": }\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON at column 32"):
        read_source(str(path))


def test_malformed_json_document_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]')
    with pytest.raises(DataError, match=r"bad\.json:3: invalid JSON"):
        read_source(str(path))


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8 \(byte 0xe9\)"):
        read_source(str(path))


def test_missing_field_names_field_and_record_index(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ALPACA[0], {"instruction": "no answer"}]))
    with pytest.raises(RecordError, match=r"d\.json: record 1: missing field 'output'"):
        read_records(_cfg(path, format="alpaca"), str(path), "sft")


@pytest.mark.parametrize("row, message", [
    ({"instruction": "q", "output": 5}, "field 'output' must be a string, got int"),
    ({"instruction": "   ", "output": "a"}, "field 'instruction' is empty"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "has no assistant turn"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, r"messages\[0\]\.role must be one of"),
    ({"conversations": [{"from": "alien", "value": "hi"}]}, r"conversations\[0\]\.from 'alien'"),
    ({"prompt": "p", "chosen": "a", "rejected": 3}, "field 'rejected' must be a string, got int"),
    ({"instruction": "q", "output": "a", "category": [1]}, "field 'category' must be a string or an integer"),
])
def test_bad_records_name_the_line_and_field(tmp_path, row, message):
    path = _jsonl(tmp_path / "d.jsonl", [row])
    kind = "preference" if "chosen" in row else "sft"
    with pytest.raises(RecordError, match=rf"d\.jsonl:1: .*{message}"):
        read_records(_cfg(path), str(path), kind)


def test_unknown_format_suggests_column_mapping(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"q": "a", "a": "b"}])
    with pytest.raises(RecordError, match="cannot tell the data format.*data.columns"):
        read_records(_cfg(path), str(path), "sft")


def test_column_mapping(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"q": "What?", "a": "That.", "topic": "misc"}])
    records, *_ = read_records(_cfg(path, columns={"q": "instruction", "a": "output", "topic": "category"}),
                               str(path), "sft")
    assert records[0]["messages"][1]["content"] == "That." and records[0]["category"] == "misc"


def test_invalid_records_skip_counts_each_reason(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [ALPACA[0], {"instruction": "x"}, {"instruction": "y"}, ALPACA[1]])
    records, _, _, report = read_records(_cfg(path, invalid_records="skip"), str(path), "sft")
    assert len(records) == 2
    assert report == [{"client": "source", "step": "read.missing field 'output'", "dropped": 2}]


def test_chosen_equal_rejected_is_dropped_and_counted(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                         {"prompt": "p", "chosen": "same ", "rejected": "same"}])
    records, _, _, report = read_records(_cfg(path), str(path), "preference")
    assert len(records) == 1
    assert report == [{"client": "source", "step": "read.chosen == rejected", "dropped": 1}]


def test_sft_data_cannot_feed_a_preference_objective(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ALPACA)
    with pytest.raises(RecordError, match="no chosen/rejected pair"):
        read_records(_cfg(path), str(path), "preference")


def test_federated_file_keeps_clients_in_key_order(tmp_path):
    path = tmp_path / "fed.json"
    path.write_text(json.dumps({"user_b": [ALPACA[0]], "user_a": ALPACA}))
    table = read_source(str(path))
    assert table.groups == ["user_b", "user_a", "user_a"]
    assert table.where[2] == f"{path}: client 'user_a' record 1"


def test_directory_of_files_is_one_group_per_file(tmp_path):
    (tmp_path / "parties").mkdir()
    _jsonl(tmp_path / "parties" / "hospital.jsonl", ALPACA)
    _jsonl(tmp_path / "parties" / "bank.jsonl", ALPACA[:1])
    (tmp_path / "parties" / "notes.txt").write_text("ignored: not a data file")
    table = read_source(str(tmp_path / "parties"))
    assert table.groups == ["bank", "hospital", "hospital"]


def test_a_directory_of_text_files_is_one_party_per_file(tmp_path):
    """Raw documents for synthesis (format text): one document per non-empty line, a party per file."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "clinic.txt").write_text("First note.\n\nSecond note.\n")
    (tmp_path / "docs" / "bank.txt").write_text("A ledger entry.\n")
    table = read_source(str(tmp_path / "docs"))
    assert table.groups == ["bank", "clinic", "clinic"]
    assert [r["text"] for r in table.rows] == ["A ledger entry.", "First note.", "Second note."]
    assert table.where[2].endswith("clinic.txt:3")


def test_unsupported_and_missing_sources(tmp_path):
    (tmp_path / "d.xml").write_text("<a/>")
    with pytest.raises(DataError, match=r"d\.xml: unsupported file type \.xml"):
        read_source(str(tmp_path / "d.xml"))
    with pytest.raises(DataError, match="data source not found"):
        read_source(str(tmp_path / "none.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="contains no records"):
        read_source(str(tmp_path / "empty.jsonl"))


def test_hugging_face_source_through_datasets(tmp_path):
    """`hf:` goes through datasets.load_dataset (here a local dataset folder: no network)."""
    (tmp_path / "ds").mkdir()
    _jsonl(tmp_path / "ds" / "train.jsonl", ALPACA)
    table = read_source(f"hf:{tmp_path / 'ds'}", split="train")
    assert table.rows == ALPACA and table.where[1].endswith("[train] row 1")
    with pytest.raises(DataError, match="cannot load split 'validation'"):
        read_source(f"hf:{tmp_path / 'ds'}", split="validation")
