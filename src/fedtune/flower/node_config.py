"""A SuperNode's own settings, from Flower's node config (``flower-supernode --node-config``).

- ``client-id``: which client of the federation this node is (deployment); in Flower's
  simulation engine the node's ``partition-id`` plays that role.
- ``data-file``: optional JSON Lines file of SFT records (``{"messages": [...], "category": ...}``)
  used as this node's training data instead of its partition of the built-in suite.
- ``state-dir``: where client-side algorithm state (e.g. SCAFFOLD control variates) is kept
  (default: ``$FLWR_HOME/fedtune-node-state``).
- ``threads``: torch threads for training (default: torch's choice, all cores); set it when
  several SuperNodes share one machine, so they do not oversubscribe its cores.
- ``trainer-socket``: the socket of this site's resident trainer (set by ``fedtune flower
  supernode``), which keeps the base model loaded across rounds; without it each message's
  ClientApp process trains itself, loading the model anew (see ``resident_trainer``).
- ``fault-nonfinite``, ``fault-fail-round``: fault injection for tests and drills (see ``faults``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class NodeConfigError(ValueError):
    """The SuperNode was started with a node config fedtune cannot use."""


@dataclass
class NodeSettings:
    client_id: int
    data_file: Path | None = None
    state_dir: Path | None = None
    threads: int | None = None
    trainer_socket: Path | None = None
    fault_nonfinite: bool = False
    fault_fail_round: int | None = None

    @classmethod
    def from_node_config(cls, node_config: dict) -> "NodeSettings":
        raw = node_config.get("client-id", node_config.get("partition-id"))
        if raw is None:
            raise NodeConfigError("node config has no client-id: start the SuperNode with "
                                  "--node-config \"client-id=N\" (N = this site's client index)")
        try:
            client_id = int(raw)
        except (TypeError, ValueError):
            raise NodeConfigError(f"node config: client-id must be an integer, got {raw!r}") from None
        data_file = node_config.get("data-file") or None
        state_dir = node_config.get("state-dir") or None
        socket = node_config.get("trainer-socket") or None
        return cls(
            client_id=client_id,
            data_file=Path(str(data_file)).expanduser() if data_file else None,
            state_dir=Path(str(state_dir)).expanduser() if state_dir else None,
            threads=int(node_config["threads"]) if node_config.get("threads") else None,
            trainer_socket=Path(str(socket)) if socket else None,
            fault_nonfinite=bool(node_config.get("fault-nonfinite", False)),
            fault_fail_round=int(node_config["fault-fail-round"]) if "fault-fail-round" in node_config else None,
        )
