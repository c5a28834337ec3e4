"""The Flower run config -> the fedtune RunConfig and the Flower engine's own settings.

The run config is ``[tool.flwr.app.config]`` in pyproject.toml, flattened by Flower ("a.b"
keys), plus ``flwr run --run-config "k=v ..."`` overrides (Flower only accepts overrides of
keys that pyproject.toml defines). Keys:

- ``config``: the fedtune YAML. Absolute; or relative to the working directory, to the app
  (the FAB, which Flower puts on ``sys.path``), or a recipe shipped in the package
  (``recipes/demo.yaml``). Empty = fedtune's defaults.
- ``<section>.<key>`` (e.g. ``federation.rounds = 2``) and ``name``/``seed``: fedtune overrides.
- ``set``: more fedtune overrides, ``;``-separated (``"train.lr=5e-4; eval.every=0"``);
  they win over the keys above.
- ``resume``: continue the run directory from its last checkpoint.
- ``min-replies``: sampled clients that must reply for a round to count (0 = all of them).
- ``round-timeout``: seconds to wait for a round's replies (0 = until every node replied or
  the SuperLink declared it offline).
- ``node-wait``: seconds to wait at the start for one SuperNode per client.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fedtune.config import ConfigError, RunConfig, load_config

APP_KEYS = ("config", "set", "resume", "min-replies", "round-timeout", "node-wait")


@dataclass
class AppSettings:
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    min_replies: int | None = None  # None = every sampled client
    round_timeout: float | None = None  # None = no timeout
    node_wait: float = 120.0

    @classmethod
    def from_run_config(cls, run_config: dict) -> "AppSettings":
        """Overrides apply in this order: the YAML, then ``<section>.<key>`` keys, then ``set``."""
        s = cls()
        later: list[str] = []
        for key, value in run_config.items():
            if key == "config":
                s.config = str(value)
            elif key == "set":
                later = [item.strip() for item in str(value).split(";") if item.strip()]
            elif key == "resume":
                s.resume = bool(value)
            elif key == "min-replies":
                s.min_replies = int(value) or None
            elif key == "round-timeout":
                s.round_timeout = float(value) or None
            elif key == "node-wait":
                s.node_wait = float(value)
            elif key.split(".", 1)[0] in RunConfig.model_fields:
                s.overrides.append(f"{key}={_render(value)}")
            else:
                raise ConfigError(f"run config: unknown key {key!r}; expected one of {APP_KEYS} "
                                  "or a fedtune key such as 'federation.rounds'")
        s.overrides += later
        return s

    def run_config(self) -> RunConfig:
        """The validated fedtune config (file, then the overrides in order)."""
        return load_config(resolve_config_path(self.config) if self.config else None, self.overrides)


def _render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_config_path(value: str) -> Path:
    """Find the fedtune YAML named in the run config (see the module docstring for the order)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    candidates = [Path.cwd() / path]
    candidates += [Path(entry) / path for entry in sys.path if entry and Path(entry).is_dir()]
    recipes = resources.files("fedtune.recipes")
    parts = path.parts[1:] if path.parts[:1] == ("recipes",) else path.parts
    candidates.append(Path(str(recipes.joinpath(*parts))))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"run config: config file {value!r} not found in the working directory, the app or "
                      "the packaged recipes")
