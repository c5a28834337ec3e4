"""The synthesis-method registry: ``synth: {method: NAME, ...}`` turns or extends the training data.

A method is one file in this package: a parameter model and a class registered with
``@SYNTHESIZERS.register(NAME, Params)``. A ``Synthesis`` runs on each client's records before the
data pipeline (on the client's own machine on Flower), with the generator its ``generation``
names; a ``ServerSynthesis`` runs at the server after the last round, on the global adapter.
"""

from __future__ import annotations

from fedtune.schema import Registry

SYNTHESIZERS = Registry("synth", tag="method")


class Synthesis:
    """Base of the client-side methods. ``synthesize(records, client, sizes)`` -> (records, report rows);
    ``sizes`` is every client's record count before synthesis where the caller knows it (a node
    with its own data file knows only its own: None)."""

    runs_on = "clients"

    def synthesize(self, records: list[dict], client: str,
                   sizes: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
        raise NotImplementedError


class ServerSynthesis:
    """Base of the server-side methods (KnowledgeSG): built with ``(cfg, model, tokenizer, store,
    run_path)`` by the round loop; after the last round ``apply(round, global_adapter, initial_adapter)`` returns
    (the adapter the run ends with, the report for the round's metrics row), and ``summary(privacy,
    report)`` what summary.json says about it, from that row's report (so a resumed run says the same)."""

    runs_on = "server"

    def apply(self, round: int, global_adapter, initial_adapter) -> tuple[object, dict]:
        raise NotImplementedError

    def summary(self, privacy: dict | None, report: dict) -> dict:
        raise NotImplementedError
