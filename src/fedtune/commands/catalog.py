"""`fedtune ls`: the catalog of registered components, read from the registries (torchtune's
``tune ls`` idea): what a config can name, what each does, and its parameters with defaults."""

from __future__ import annotations

from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedtune.schema import REGISTRIES, Entry, Registry

# `fedtune ls KIND`: the plural a user types -> the registry kind; and where a choice goes in YAML.
KINDS = {"algorithms": "algorithm", "objectives": "objective", "reducers": "reducer", "attacks": "attack",
         "adapters": "adapter", "ops": "op", "metrics": "metric", "generators": "generator",
         "codecs": "codec", "offsite": "offsite", "synth": "synth", "tasks": "eval task",
         "trackers": "tracker"}
WHERE = {"algorithm": "algorithm", "objective": "train.objective", "reducer": "aggregation.reducer",
         "attack": "attack", "adapter": "model.adapter", "op": "data.pipeline[]", "metric": "eval.metrics[]",
         "generator": "…generation (eval.safety, defense.posthoc, llm_judge)", "codec": "communication.compress",
         "offsite": "offsite", "synth": "synth", "eval task": "eval.tasks[] (fedtune eval --task)",
         "tracker": "tracking"}


def registries() -> dict[str, Registry]:
    """Every registry, populated: importing the config imports every component's module."""
    import fedtune.config  # noqa: F401

    return {plural: REGISTRIES[kind] for plural, kind in KINDS.items()}


def parameters(entry: Entry, tag: str) -> str:
    """``key=default`` for each parameter of the entry (its tag excluded)."""
    out = []
    for name, field in entry.params.model_fields.items():
        if name == tag:
            continue
        default = field.default if field.default is not PydanticUndefined else "required"
        out.append(f"{name}={default}")
    return ", ".join(out) or "—"


def print_catalog(kinds: list[str], console: Console) -> None:
    for plural in kinds:
        registry = registries()[plural]
        table = Table(title=f"{plural} — set with {WHERE[registry.kind]}: {{{registry.tag}: NAME, ...}}",
                      title_justify="left")
        for col in ("name", "what it does", "parameters (defaults)"):
            table.add_column(col, overflow="fold")
        for entry in sorted(registry.entries.values(), key=lambda e: e.name):
            text = [entry.name, entry.description.replace("``", ""), parameters(entry, registry.tag)]
            table.add_row(*map(escape, text))
        console.print(table)
