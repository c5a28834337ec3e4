"""report.html: self-contained, plots embedded as valid PNGs, text escaped, partial runs handled."""

import base64
import json
import re

from fedtune.report.html import write_comparison_report, write_report


def _write_run(path, name="run", summary=True, rounds=3):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("name: x\n")
    rows = []
    for r in range(rounds):
        row = {"round": r, "clients": [0, 1], "train_loss": 2.0 - r * 0.5, "bytes_up": 1000, "bytes_down": 1000,
               "seconds": 1.0, "rejected": {},
               "train": {"0": {"loss": 2.1 - r, "reward_accuracy": 0.5 + 0.1 * r}, "1": {"loss": 1.9 - r}}}
        if r % 2 == 1 or r == rounds - 1:
            row["eval"] = {"global": {"exact_match": 0.1 * r, "loss": 3.0 - r, "n": 10},
                           "clients": {"0": {"exact_match": 0.2, "loss": 2.0, "n": 5}}}
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        (path / "summary.json").write_text(json.dumps({"name": name, "algorithm": "fedavg", "model": "m",
                                                       "final": rows[-1]["eval"], "seconds": 3.0}))


def _pngs(html):
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_embeds_valid_pngs_and_summary(tmp_path):
    _write_run(tmp_path / "r")
    html = write_report(tmp_path / "r").read_text()
    images = _pngs(html)
    assert len(images) == 5  # train loss, exact match, test loss, communication, reward_accuracy
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and img[12:16] == b"IHDR" for img in images)
    assert "final exact match" in html and "0.2" in html
    assert "http" not in html.replace("https://", "").split("<body>")[0]  # no external assets in the head


def test_report_escapes_text(tmp_path):
    _write_run(tmp_path / "r", name="<script>alert(1)</script>")
    html = write_report(tmp_path / "r").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_for_run_in_progress_and_single_round(tmp_path):
    _write_run(tmp_path / "r", summary=False, rounds=1)
    html = write_report(tmp_path / "r").read_text()
    assert "Run in progress" in html and len(_pngs(html)) >= 3


def test_comparison_report(tmp_path):
    _write_run(tmp_path / "a")
    _write_run(tmp_path / "b")
    out = write_comparison_report(tmp_path / "cmp.html", {"A": tmp_path / "a", "B": tmp_path / "b"}, "cmp",
                                  extra={"base": {"global": {"exact_match": 0.0, "loss": 5.0}}})
    html = out.read_text()
    assert len(_pngs(html)) == 2 and "a/report.html" in html and ">base<" in html
    assert 'alt="accuracy per round"' in html  # exact match per round, a line per run


def test_report_data_section_totals_each_step(tmp_path):
    _write_run(tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    summary["data"] = {"source": "d.jsonl", "partition": "dirichlet",
                       "steps": [{"client": "a", "step": "near_dedup", "kept": 8, "dropped": 2},
                                 {"client": "b", "step": "near_dedup", "kept": 5, "dropped": 1},
                                 {"client": "a", "step": "tokenize.train.truncated", "changed": 4}],
                       "clients": {"a": {"train": 7, "test": 1}, "b": {"train": 4, "test": 1}}}
    (tmp_path / "r" / "summary.json").write_text(json.dumps(summary))
    html = write_report(tmp_path / "r").read_text()
    data = html.split("<h2>Data</h2>")[1].split("<h2>")[0]
    assert "d.jsonl" in data and "dirichlet" in data and "2 clients" in data
    cells = re.findall(r"<td>([^<]*)</td>", data)
    assert cells[:4] == ["near_dedup", "13", "3", "0"] and cells[4:8] == ["tokenize.train.truncated", "0", "0", "4"]
