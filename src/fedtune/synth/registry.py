"""The synthesis-method registry: ``synth: {method: NAME, ...}`` turns or extends a client's data.

A method is one file in this package: a parameter model and a ``Synthesis`` class registered with
``@SYNTHESIZERS.register(NAME, Params)``. It runs on each client's records before the data
pipeline (on the client's own machine on Flower), with the generator its ``generation`` names.
"""

from __future__ import annotations

from fedtune.schema import Registry

SYNTHESIZERS = Registry("synth", tag="method")


class Synthesis:
    """Base of every method. ``synthesize(records, client, sizes)`` -> (records, report rows);
    ``sizes`` is every client's record count before synthesis where the caller knows it (a node
    with its own data file knows only its own: None)."""

    def synthesize(self, records: list[dict], client: str,
                   sizes: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
        raise NotImplementedError
