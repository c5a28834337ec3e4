"""The two record kinds everything downstream consumes, and their validation.

SFT record:        {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
                    "category": str}            # loss on every assistant turn
Preference record: {"prompt": [{"role": ..., "content": ...}, ...],   # ends with a user turn
                    "chosen": str, "rejected": str, "category": str}

Loaders turn every input format into one of these; a record that cannot be turned into one
raises ``RecordError`` naming where it came from (file, line/index, field).
"""

from __future__ import annotations

from typing import Literal

RecordKind = Literal["sft", "preference"]
ROLES = ("system", "user", "assistant")


class RecordError(ValueError):
    """A bad input record; the message names the source, the position and the field."""


def _check_messages(messages, where: str, field: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise RecordError(f"{where}: field '{field}' must be a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise RecordError(f"{where}: {field}[{i}].role must be one of {ROLES}")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise RecordError(f"{where}: {field}[{i}].content must be a non-empty string")


def check_sft(record: dict, where: str) -> dict:
    """Validate an SFT record in place and return it."""
    _check_messages(record.get("messages"), where, "messages")
    if not any(m["role"] == "assistant" for m in record["messages"]):
        raise RecordError(f"{where}: 'messages' has no assistant turn to learn from")
    record.setdefault("category", "")
    return record


def check_preference(record: dict, where: str) -> dict:
    """Validate a preference record in place and return it."""
    _check_messages(record.get("prompt"), where, "prompt")
    if record["prompt"][-1]["role"] != "user":
        raise RecordError(f"{where}: 'prompt' must end with a user turn")
    for key in ("chosen", "rejected"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise RecordError(f"{where}: field '{key}' must be a non-empty string")
    record.setdefault("category", "")
    return record


def sft_answer(record: dict) -> str:
    """The reference answer of an SFT record: its last assistant turn."""
    return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "assistant")
