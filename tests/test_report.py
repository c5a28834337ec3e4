"""report.html: self-contained, plots embedded as valid PNGs, text escaped, partial runs handled;
the comparison page of several runs; both rendered in a real headless browser where one is installed."""

import base64
import json
import re
import shutil
import subprocess

import pytest

from fedtune.report.compare import write_comparison
from fedtune.report.html import write_report
from fedtune.report.plots import eval_metric, run_curves, train_loss


def _write_run(path, name="run", summary=True, rounds=3, algorithm="fedavg", client_em=0.2):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("name: x\n")
    rows = []
    for r in range(rounds):
        row = {"round": r, "clients": [0, 1], "train_loss": 2.0 - r * 0.5, "bytes_up": 1000, "bytes_down": 1000,
               "seconds": 1.0, "rejected": {},
               "train": {"0": {"loss": 2.1 - r, "reward_accuracy": 0.5 + 0.1 * r}, "1": {"loss": 1.9 - r}}}
        if r % 2 == 1 or r == rounds - 1:
            row["eval"] = {"global": {"exact_match": 0.1 * r, "loss": 3.0 - r, "n": 10},
                           "clients": {"0": {"exact_match": client_em, "loss": 2.0, "n": 5},
                                       "1": {"exact_match": 0.5, "loss": 1.0, "n": 5}},
                           "fairness": {"exact_match": {"mean": (client_em + 0.5) / 2, "worst": client_em,
                                                        "worst_client": "0", "best": 0.5, "best_client": "1",
                                                        "spread": 0.5 - client_em, "std": (0.5 - client_em) / 2}},
                           "tasks": {"gsm8k": {"accuracy": 0.05 * r, "rouge_l": 0.3, "n": 20, "seconds": 12.5}}}
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        (path / "summary.json").write_text(json.dumps({"name": name, "algorithm": algorithm, "model": "m", "rounds": rounds,
                                                       "final": rows[-1]["eval"], "seconds": 3.0, "bytes_total": 6000}))


def _pngs(html):
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_embeds_valid_pngs_and_summary(tmp_path):
    _write_run(tmp_path / "r")
    html = write_report(tmp_path / "r").read_text()
    images = _pngs(html)
    assert len(images) == 5  # train loss, exact match, test loss, communication, reward_accuracy
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and img[12:16] == b"IHDR" for img in images)
    assert "http" not in html.replace("https://", "").split("<body>")[0]  # no external assets in the head


def test_report_shows_every_final_figure_per_client_with_units(tmp_path):
    _write_run(tmp_path / "r", client_em=0.25)
    html = write_report(tmp_path / "r").read_text()
    final = html.split("<h2>Final evaluation</h2>")[1]
    assert "<th>global test</th><th>client 0</th><th>client 1</th>" in final
    assert "<td>exact_match</td><td>20.0%</td><td>25.0%</td><td>50.0%</td>" in final  # shares as %
    assert "<td>gsm8k</td><td>seconds</td><td>12.5 s</td>" in final and "<td>rouge_l</td><td>30.0%</td>" in final
    assert "<td>exact_match</td><td>37.5%</td><td>25.0%</td><td>0</td>" in final  # mean, worst, worst client
    assert "<td>bytes_total</td><td>0.01 MB</td>" in html and "<td>2000.00 MB</td>" not in html
def test_report_escapes_text(tmp_path):
    _write_run(tmp_path / "r", name="<script>alert(1)</script>")
    html = write_report(tmp_path / "r").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_for_run_in_progress_and_single_round(tmp_path):
    """One round: its figures are in the tables, and no plot is a one-point line."""
    _write_run(tmp_path / "r", summary=False, rounds=1)
    html = write_report(tmp_path / "r").read_text()
    assert "Run in progress" in html and _pngs(html) == []
    assert "<h2>Final evaluation</h2>" in html and "<td>0.0%</td>" in html
    rows = [{"round": 0, "train_loss": 1.0, "eval": {"global": {"exact_match": 0.5}}}]
    assert train_loss(rows) is None and eval_metric(rows, "exact_match", "t") is None
    assert run_curves({"a": [(0, 1.0)], "b": [(0, 2.0)]}, "y", "t") is None
    assert run_curves({"a": [(0, 1.0), (1, 2.0)], "b": [(0, 2.0)]}, "y", "t").startswith(b"\x89PNG")


def test_comparison_report(tmp_path):
    """Two runs and a base model: every run's curves on shared axes, a table of final figures
    with units, the tasks side by side, and each client's gain over the local-only run."""
    _write_run(tmp_path / "a")
    _write_run(tmp_path / "local", algorithm="local", client_em=0.1)
    out = write_comparison(tmp_path / "cmp" / "cmp.html", {"A": tmp_path / "a", "local": tmp_path / "local"}, "cmp",
                           extra={"base": {"global": {"exact_match": 0.0, "loss": 5.0}}})
    html = out.read_text()
    assert "../a/report.html" in html and "../local/report.html" in html and "<td>base</td>" in html
    for alt in ("exact match per round", "test loss per round", "train loss per round", "worst client per round",
                "spread across clients per round", "MB sent per round", "gsm8k accuracy"):
        assert f'alt="{alt}"' in html, alt
    assert 'alt="privacy spent per round"' not in html  # no run recorded ε
    assert "<td>A</td><td>fedavg</td><td>3</td><td>20.0%</td>" in html and "<td>0.01 MB</td>" in html
    assert "<td>gsm8k</td><td>accuracy</td><td>—</td><td>10.0%</td><td>10.0%</td>" in html  # base (none), A, local
    gains = html.split("Gain over local-only (local)")[1]
    assert "<td>A</td><td>+10.0</td><td>+0.0</td><td>+5.0</td><td>0</td>" in gains


def _browser():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_pages_render_in_a_headless_browser_without_console_errors(tmp_path):
    """The run report and the comparison page, loaded by real Chromium: a screenshot renders and
    the console reports no error (a broken data URI or script would)."""
    _write_run(tmp_path / "a")
    _write_run(tmp_path / "b", client_em=0.4)
    pages = [write_report(tmp_path / "a"), write_comparison(tmp_path / "cmp.html", {"a": tmp_path / "a", "b": tmp_path / "b"}, "c")]
    for page in pages:
        shot = tmp_path / f"{page.stem}.png"
        done = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                               "--v=0", f"--screenshot={shot}", "--window-size=1100,3000", page.as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
        console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
        assert not [line for line in console if "error" in line.lower()], console


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
