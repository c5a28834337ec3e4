"""The `fedtune` command. Thin: parse, load the config, call the library, print a summary."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fedtune.commands.flower import app as flower_app
from fedtune.config import ConfigError, load_config
from fedtune.data.records import RecordError
from fedtune.models.loader import ModelLoadError

app = typer.Typer(
    help=(
        "Federated LLM post-training with LoRA: many parties tune one shared model, their data never moves.\n\n"
        "Start with `fedtune demo`, then `fedtune run examples/quickstart.yaml`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
USER_ERRORS = (ConfigError, ModelLoadError, RecordError, FileExistsError, FileNotFoundError, ValueError, KeyError)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key, e.g. --set train.lr=5e-4 --set federation.rounds=10."),
]


def user_errors(fn):
    """Turn expected failures into one line on stderr and exit code 2 (tracebacks with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            if kwargs.get("debug"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _logging(debug: bool) -> None:
    """Warnings from fedtune stay visible; libraries' deprecation chatter only with --debug."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        for module in ("transformers", "peft", "torch", "trl", "datasets"):
            warnings.filterwarnings("ignore", module=module)


@app.command("ls")
@user_errors
def ls(
    kind: Annotated[Optional[str], typer.Argument(
        help="algorithms | objectives | reducers | attacks | adapters | ops | metrics | generators (default: all).")] = None,
    debug: DebugOpt = False,
):
    """List what a config can name: every registered algorithm, objective, aggregation reducer,
    adapter method, data op, metric and text-generation backend, with a one-line description and its parameters.

    Example: `fedtune ls algorithms`, then `--set algorithm.name=fedprox --set algorithm.mu=0.1`.
    """
    from fedtune.commands.catalog import KINDS, print_catalog

    if kind is not None and kind not in KINDS:
        raise ConfigError(f"fedtune ls: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    print_catalog([kind] if kind else list(KINDS), console)


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see examples/quickstart.yaml).")],
    set: SetOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory (default runs/<name>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    debug: DebugOpt = False,
):
    """Run a federated experiment described in YAML and write its run directory.

    The run directory holds config.yaml, metrics.jsonl (one line per round), checkpoints/,
    the final PEFT adapter in adapter/, summary.json and report.html.
    """
    from fedtune.commands.summary_table import print_summary
    from fedtune.engine.runner import run_experiment

    _logging(debug)
    overrides = list(set or [])
    if output is not None:
        overrides.append(f"output.dir={output}")
    cfg = load_config(config, overrides)
    summary = run_experiment(cfg, resume=resume, console=err_console)
    print_summary(console, {cfg.name: summary})
    console.print(f"run directory: {cfg.run_dir()}  report: {summary['report']}")


@app.command()
@user_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the three runs and the report go.")] = Path("runs/demo"),
    set: SetOpt = None,
    debug: DebugOpt = False,
):
    """Base model vs local-only vs federated (FedAvg) on the built-in model and task suite.

    Shows why federation helps: each client alone knows only its slice of the facts and its own
    skill; the federation learns all of them. Prints one table and writes a comparison report.
    """
    from fedtune.commands.demo import run_demo

    _logging(debug)
    run_demo(output, list(set or []), console, err_console)


@app.command("eval")
@user_errors
def eval_(
    target: Annotated[Path, typer.Argument(help="A run directory (its config and adapter) or an experiment YAML.")],
    adapter: Annotated[Optional[Path], typer.Option(help="A PEFT adapter directory to evaluate instead.")] = None,
    base: Annotated[bool, typer.Option("--base", help="Evaluate the base model without any adapter.")] = False,
    canaries: Annotated[bool, typer.Option(
        "--canaries", help="Also measure the exposure (bits) of the secrets the config plants (data.canaries) "
                           "and how many greedy decoding extracts.")] = False,
    task: Annotated[Optional[list[str]], typer.Option(
        "--task", "-t", help="An evaluation task (repeatable; replaces the config's eval.tasks): TYPE:PATH "
                             "(generation:qa.jsonl, multiple_choice:mc.jsonl, perplexity:held_out.jsonl, "
                             "generation:suite), lm_eval:TASK (a cached harness task or a task YAML), "
                             "an inline mapping '{type: generation, path: gsm8k.jsonl, extract: gsm8k}', "
                             "or a YAML file listing tasks. `fedtune ls tasks` lists types and keys.")] = None,
    set: SetOpt = None,
    debug: DebugOpt = False,
):
    """Score a base model or a trained adapter: exact match and loss on the config's test sets
    (global and per client, with the spread across clients), the evaluation tasks (--task or the
    config's eval.tasks: lm-evaluation-harness, multiple choice, generation with answer
    extraction, perplexity, judges, calibration) and, with --canaries, the leakage of planted
    secrets. Example: fedtune eval runs/demo --task generation:../shared/data/gsm8k/test.jsonl"""
    from fedtune.commands.evaluate import evaluate_target
    from fedtune.commands.summary_table import print_eval

    _logging(debug)
    result = evaluate_target(target, adapter, base, list(set or []), canaries, list(task or []))
    print_eval(console, result)


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    merged: Annotated[Path, typer.Option("--merged", help="Write a merged Hugging Face model (base + LoRA) here.")],
    debug: DebugOpt = False,
):
    """Merge the run's final adapter into its base model and save a standalone HF model."""
    from fedtune.models.export import export_merged

    _logging(debug)
    cfg = load_config(Path(run_dir) / "config.yaml")
    out = export_merged(cfg.model, Path(run_dir) / "adapter", merged)
    console.print(f"merged model written to {out}")


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One run directory, or several to compare.", metavar="RUN...")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write a comparison page here (the default for several runs: compare.html).")] = None,
    debug: DebugOpt = False,
):
    """(Re)write a run's report.html — every metric per round and per client, the final
    evaluation with its tasks, data, config — or, for several runs (or with -o), one page
    comparing them: their curves on the same axes (exact match, losses, tasks, ε, MB sent, worst
    client and spread), a table of final figures, and each client's gain over a local-only run
    among them. Example: fedtune report runs/demo/local runs/demo/fedavg -o compare.html"""
    from fedtune.report.compare import write_comparison
    from fedtune.report.html import write_report

    for run_dir in run_dirs:
        if not (run_dir / "metrics.jsonl").exists():
            raise FileNotFoundError(f"{run_dir}: not a run directory (no metrics.jsonl)")
    if len(run_dirs) == 1 and output is None:
        console.print(f"report written to {write_report(run_dirs[0])}")
        return
    labels = [d.resolve().name for d in run_dirs]
    if len(set(labels)) < len(labels):  # same directory names: label by the path as given
        labels = [str(d) for d in run_dirs]
    out = write_comparison(output or Path("compare.html"), dict(zip(labels, run_dirs)),
                           f"fedtune: {len(run_dirs)} runs compared")
    console.print(f"comparison written to {out}")


data_app = typer.Typer(
    help="Look at a config's federated data before training, or write it out one file per party.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
@user_errors
def data_inspect(
    config: Annotated[Path, typer.Argument(help="Experiment YAML; only its model (tokenizer) and data sections are used.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where the PNG plots go (default <run dir>/data).")] = None,
    set: SetOpt = None,
    debug: DebugOpt = False,
):
    """Per-client counts, token-length percentiles, category mix, duplicates and what processing
    dropped; writes a client x category heatmap and a token-length histogram."""
    from fedtune.commands.data import inspect_data

    _logging(debug)
    cfg = load_config(config, list(set or []))
    inspect_data(cfg, output or cfg.run_dir() / "data", console)


@data_app.command("split")
@user_errors
def data_split(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (its data section).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for train/<client>.jsonl, test/, global_test.jsonl.")],
    set: SetOpt = None,
    debug: DebugOpt = False,
):
    """Partition and process the data as a run would, and write one file per client, so that in a
    real deployment each party gets only its own file (`source: DIR/train` reads it back)."""
    from fedtune.commands.data import split_data

    _logging(debug)
    split_data(load_config(config, list(set or [])), output, console)


synth_app = typer.Typer(
    help="Synthesize the clients' training data without training, to inspect it before a run.",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")


def _synth_command(method: str, section: str, doc: str) -> None:
    """``fedtune synth <method>``: one command per client-side synthesis method, same options."""

    def command(config, output, set=None, debug=False):
        from fedtune.commands.data import synth_data

        _logging(debug)
        synth_data(load_config(config, list(set or [])), method, output, console)

    # objects, not strings: this module's annotations are postponed, and these depend on the method
    command.__annotations__ = {
        "config": Annotated[Path, typer.Argument(help=f"Experiment YAML with `synth: {section}`.")],
        "output": Annotated[Path, typer.Option("--output", "-o",
                                               help="Directory for train/<client>.jsonl, test/, manifest.json.")],
        "set": SetOpt, "debug": DebugOpt}
    synth_app.command(method.replace("_", "-"), help=doc)(user_errors(command))


CACHED = "The outputs are cached: the run on this config regenerates nothing (docs/synthesis.md)."
_synth_command("u2s", "{method: u2s, examples: FILE, ...}",
               "FedIT-U2S: turn each client's raw text into instruction pairs with retrieved few-shot examples, and "
               f"write one file per client with what each pair was made from. {CACHED}")
_synth_command("matrix", "{method: matrix, questions: FILE, output: sft | dpo, ...}",
               "MATRIX: answer each seed question, simulate the social scene of following the answer (agents, a "
               "plan, a modulator's critiques) and revise it; SFT pairs (question, revised) or DPO pairs "
               "(revised over initial), with every model call in DIR/transcripts/. The files serve as a run's "
               f"data.source or as defense.posthoc.aligned. {CACHED}")
_synth_command("matrix_gen", "{method: matrix_gen, topics: [...], requirement: general | safety | multi_turn | "
               "difficulty, ...}",
               "MATRIX-Gen: simulate scenes from seed topics or questions and have each agent pose an instruction "
               "under a requirement, answered (SFT) or answered twice and judged (DPO); the report has the "
               f"instructions' diversity against the seeds. {CACHED}")


app.add_typer(flower_app, name="flower")  # docs/deployment.md


def main():  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
