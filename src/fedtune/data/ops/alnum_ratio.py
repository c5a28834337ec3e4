"""Data-Juicer's ``alphanumeric_filter`` (re-derived from its docs and code, not copied)."""

from __future__ import annotations

from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp, within
from fedtune.data.ops.text import record_text
from fedtune.schema import Section


class AlnumRatioParams(Section):
    """Keep records whose share of alphanumeric characters is within [min, max] (Data-Juicer)."""

    min: float = Field(0.25, ge=0, le=1)
    max: float = Field(1.0, ge=0, le=1)


def alnum_ratio(text: str) -> float:
    """Share of alphanumeric characters among all characters."""
    return sum(c.isalnum() for c in text) / len(text) if text else 0.0


@OPS.register("alnum_ratio", AlnumRatioParams)
class AlnumRatio(DataOp):
    """Keep records whose share of alphanumeric characters is within [min, max]."""

    def keep(self, records, ctx):
        return [within(alnum_ratio(record_text(r)), self.params.min, self.params.max) for r in records]
