"""A federated dataset: per-client train/test records, a held-out global test set, and the
processing report (every record dropped or changed, counted per client and per step)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedtune.data.records import RecordKind


def step_totals(steps: list[dict]) -> dict[str, dict[str, int]]:
    """Report rows summed over clients: step -> {"kept", "dropped", "changed"}, in first-seen order."""
    totals: dict[str, dict[str, int]] = {}
    for row in steps:
        total = totals.setdefault(row["step"], {"kept": 0, "dropped": 0, "changed": 0})
        for key in total:
            total[key] += row.get(key, 0)
    return totals


@dataclass
class ClientData:
    client_id: int
    name: str
    train: list[dict]
    test: list[dict] = field(default_factory=list)


@dataclass
class FederatedData:
    kind: RecordKind
    clients: list[ClientData]
    global_test: list[dict]
    # {"steps": [{"client": name, "step": op, "kept": n, "dropped": m, ...}, ...], ...}
    report: dict = field(default_factory=lambda: {"steps": []})

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def pooled(self) -> ClientData:
        """All clients' training data as one client (the centralized baseline)."""
        train = [r for c in self.clients for r in c.train]
        test = [r for c in self.clients for r in c.test]
        return ClientData(client_id=0, name="pooled", train=train, test=test)
