"""Length filters: characters of the record's text, or tokens with the chat template applied."""

from __future__ import annotations

from pydantic import Field

from fedtune.data.ops.registry import OPS, DataOp, within
from fedtune.data.ops.text import record_text
from fedtune.data.tokenize import as_sft, tokenize_sft
from fedtune.schema import Section


class LengthParams(Section):
    """Keep records whose text length in characters is within [min, max]."""

    min: int = Field(0, ge=0)
    max: int | None = None


class TokenLengthParams(Section):
    """Keep records whose token count (model tokenizer, chat template applied) is within [min, max]."""

    min: int = Field(0, ge=0)
    max: int | None = None


@OPS.register("length", LengthParams)
class Length(DataOp):
    """Keep records whose text length in characters is within [min, max]."""

    def keep(self, records, ctx):
        return [within(len(record_text(r)), self.params.min, self.params.max) for r in records]


@OPS.register("token_length", TokenLengthParams)
class TokenLength(DataOp):
    """Keep records whose token count (model tokenizer, chat template applied) is within [min, max]."""

    needs_model = True

    def keep(self, records, ctx):
        return [within(n, self.params.min, self.params.max) for n in token_lengths(records, ctx)]


def token_lengths(records: list[dict], ctx) -> list[int]:
    """Tokens of each record with the chat template applied (the longer side of a pair)."""
    sides = [[r] for r in records] if "messages" in records[0] else [[as_sft(r), as_sft(r, "rejected")] for r in records]
    out = []
    for pair in sides:
        ts = tokenize_sft(pair, ctx.tokenizer, 10**9, ctx.system_prompt)
        out.append(max(ts.lengths(), default=0))
    return out
