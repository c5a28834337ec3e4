"""The text an op looks at: every human-written part of a record, and its words."""

from __future__ import annotations

import re

WORD = re.compile(r"[\w']+")


def record_text(record: dict) -> str:
    """Everything a human wrote in the record: every turn, plus both answers of a pair."""
    if "messages" in record:
        return "\n".join(m["content"] for m in record["messages"])
    return "\n".join([*(m["content"] for m in record["prompt"]), record["chosen"], record["rejected"]])


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())
