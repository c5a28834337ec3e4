"""Experiment trackers: the run's config, every metrics.jsonl row and the final artifacts sent to a
tracking backend (``tracking: {backend: mlflow | tensorboard, ...}``; ``fedtune ls trackers``).

A backend is a :class:`Tracker` registered in ``TRACKERS``, one file each. The round loop calls
``start`` once with the rows metrics.jsonl keeps (after a resume has truncated it, so a tracker
can catch up on rows an earlier process wrote but did not log), ``log_row`` after each row reaches metrics.jsonl,
``finish`` after adapter/ and summary.json are written, and ``close`` whatever happens (a
context manager). The base
class is the no-op tracker of an untracked run. Backends import their packages only in ``start``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedtune.schema import ConfigError, Registry, Section

if TYPE_CHECKING:
    from fedtune.config import RunConfig

TRACKERS = Registry("tracker", tag="backend")

EXTRA = "pip install 'fedtune[tracking]'"


class Tracker:
    """One run's connection to a tracking backend (this base logs nothing)."""

    # the importable modules the backend needs, with the distribution that provides each
    requires: dict[str, str] = {}

    def __init__(self, params: Section | None = None):
        self.params = params

    def start(self, cfg: RunConfig, run_dir: Path, resume: bool, rows: list[dict]) -> None:
        """Open the backend's run; with ``resume``, continue the one an earlier process began
        (``rows``: what metrics.jsonl holds now)."""

    def log_row(self, row: dict) -> None:
        """One round's metrics row, as appended to metrics.jsonl (step = ``row['round']``)."""

    def finish(self, summary: dict, run_dir: Path) -> None:
        """The run ended normally: adapter/ and summary.json are in ``run_dir``."""

    def close(self, error: BaseException | None = None) -> None:
        """Release the backend (after ``finish``, or because ``error`` stopped the run)."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(error)


def flatten(tree: dict, sep: str = "/", prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a metrics row keyed by its path (``eval/global/exact_match``);
    strings, booleans, lists and None are left out, and so is the top-level ``round`` (the step)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, sep, path + sep))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and path != "round":
            out[path] = float(value)
    return out


def config_leaves(cfg: RunConfig) -> dict[str, Any]:
    """The config as dotted keys (``federation.rounds``) -> scalars; a list or null as its JSON."""
    out: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, (str, int, float, bool)):
            out[path] = node
        else:
            out[path] = json.dumps(node)

    walk(cfg.model_dump(mode="json"), "")
    return out


def check_available(params: Section | None) -> None:
    """A one-line error naming the extra when the chosen backend's packages are not installed
    (checked before a run directory is made; nothing is imported)."""
    if params is None:
        return
    for module, dist in TRACKERS[params.backend].target.requires.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            raise ConfigError(f"tracking.backend={params.backend} needs {dist}: {EXTRA}")


def start_tracker(cfg: RunConfig, run_dir: Path, resume: bool, rows: list[dict]) -> Tracker:
    """The run's tracker, started (the no-op base when ``cfg.tracking`` is null; the backend's
    packages were checked when the run directory was made)."""
    params = cfg.tracking
    if params is None:
        return Tracker()
    tracker = TRACKERS[params.backend].target(params)
    tracker.start(cfg, Path(run_dir), resume, rows)
    return tracker


def import_backend(module: str, backend: str, dist: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"tracking.backend={backend} needs {dist}: {EXTRA}") from None
