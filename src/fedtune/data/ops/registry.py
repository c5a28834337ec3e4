"""The data-op registry: ``data.pipeline: [{op: NAME, ...}, ...]`` -> per-client filters.

An op is one file in this package (Data-Juicer's one-op-per-file idea): a parameter model and a
class registered with ``@OPS.register(NAME, Params)`` whose ``keep(records, ctx)`` says which of a
client's records to keep. An op that reads the model's tokenizer or log-probs sets
``needs_model = True`` and receives a ``ScoringContext`` (else ``ctx`` is None).
"""

from __future__ import annotations

from fedtune.schema import Registry, Section

OPS = Registry("op", tag="op")


class DataOp:
    """Base of every op: ``keep`` returns one bool per record (True = keep)."""

    needs_model = False

    def __init__(self, params: Section):
        self.params = params

    def keep(self, records: list[dict], ctx) -> list[bool]:
        raise NotImplementedError


def within(value: float, low: float | None, high: float | None) -> bool:
    """low <= value <= high, either bound optional (the range test of the range filters)."""
    return (low is None or value >= low) and (high is None or value <= high)
