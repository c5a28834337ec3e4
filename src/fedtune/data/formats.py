"""Turn a raw row of any common instruction or preference format into one of our two records.

Formats (``data.format``; ``auto`` picks one from the first row's fields):
  alpaca                {instruction, input?, output}
  instruction-response  {instruction, response}                 (FedLLM-Bench single-turn)
  question-answer       {question, answer}                      (GSM8K)
  sharegpt              {conversations: [{from, value}, ...]}   (FedLLM-Bench multi-turn)
  messages              {messages: [{role, content}, ...]}      (OpenAI style)
  preference            {prompt, chosen, rejected}; prompt a string or messages, chosen/rejected
                        strings or conversations (with or without the shared prompt turns)
  hh-rlhf               {chosen, rejected}: whole "\\n\\nHuman: … \\n\\nAssistant: …" dialogues
  text                  {text}: a raw document, for ``synth`` (FedIT-U2S) to turn into pairs;
                        a .txt file is one document per non-empty line

``data.columns`` renames your columns to a format's fields first ({question: instruction}).
An optional ``category`` field is kept (for partitioning and per-category reports).
"""

from __future__ import annotations

import re
from pathlib import Path

from fedtune.data.records import RecordError, check_preference, check_sft
from fedtune.data.sources import read_file

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}

# format -> the fields that identify it in auto-detection (checked in this order)
SIGNATURES = [
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("preference", ("prompt", "chosen", "rejected")),
    ("hh-rlhf", ("chosen", "rejected")),
    ("alpaca", ("instruction", "output")),
    ("instruction-response", ("instruction", "response")),
    ("question-answer", ("question", "answer")),
    ("text", ("text",)),
]
PREFERENCE_FORMATS = {"preference", "hh-rlhf"}


def detect_format(row: dict, where: str) -> str:
    for name, fields in SIGNATURES:
        if all(f in row for f in fields):
            return name
    raise RecordError(f"{where}: cannot tell the data format from fields {sorted(row)}; set data.format "
                      "or map your columns with data.columns (e.g. {{question: instruction, answer: output}})")


def _field(row: dict, key: str, where: str, fmt: str, optional: bool = False) -> str:
    if key not in row or row[key] is None:
        if optional:
            return ""
        raise RecordError(f"{where}: missing field '{key}' (format {fmt}; fields present: {sorted(row)})")
    value = row[key]
    if not isinstance(value, str):
        raise RecordError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if not value.strip() and not optional:
        raise RecordError(f"{where}: field '{key}' is empty")
    return value


def _category(row: dict, where: str) -> str:
    value = row.get("category", "")
    if value is None:
        return ""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"{where}: field 'category' must be a string or an integer, got {type(value).__name__}")


def _turns(value, where: str, key: str, role_key: str, text_key: str, roles: dict | None) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field '{key}' must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise RecordError(f"{where}: {key}[{i}] must be an object with '{role_key}' and '{text_key}'")
        role = turn[role_key]
        role = roles.get(str(role).lower()) if roles else role
        if role is None:
            raise RecordError(f"{where}: {key}[{i}].{role_key} {turn[role_key]!r} is not one of {sorted(roles)}")
        out.append({"role": role, "content": turn[text_key]})
    return out


def parse_hh_dialogue(text: str, where: str, key: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> messages (Anthropic HH-RLHF)."""
    parts = re.split(r"\n\n(Human|Assistant): ?", text if text.startswith("\n\n") else "\n\n" + text)
    if len(parts) < 3 or parts[0].strip():
        raise RecordError(f"{where}: field '{key}' is not a '\\n\\nHuman: … \\n\\nAssistant: …' dialogue")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]


def _split_pair(chosen: list[dict], rejected: list[dict], where: str) -> tuple[list[dict], str, str]:
    """Shared prompt turns and the two final assistant answers of two whole conversations."""
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise RecordError(f"{where}: 'chosen' and 'rejected' must each end with an assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RecordError(f"{where}: 'chosen' and 'rejected' differ before their last assistant turn; "
                          "they must share the prompt")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _preference(row: dict, fmt: str, where: str) -> dict:
    if fmt == "hh-rlhf":
        chosen = parse_hh_dialogue(_field(row, "chosen", where, fmt), where, "chosen")
        rejected = parse_hh_dialogue(_field(row, "rejected", where, fmt), where, "rejected")
        prompt, good, bad = _split_pair(chosen, rejected, where)
    else:
        prompt = row.get("prompt")
        if isinstance(prompt, str) or prompt is None:
            prompt = [{"role": "user", "content": _field(row, "prompt", where, fmt)}]
        else:
            prompt = _turns(prompt, where, "prompt", "role", "content", None)
        sides = []
        for key in ("chosen", "rejected"):
            value = row.get(key)
            if isinstance(value, list):
                turns = _turns(value, where, key, "role", "content", None)
                if len(turns) > 1:  # the whole conversation, prompt included
                    if turns[:-1] != prompt:
                        raise RecordError(f"{where}: '{key}' repeats turns that differ from 'prompt'")
                value = turns[-1]["content"] if turns[-1]["role"] == "assistant" else None
                if value is None:
                    raise RecordError(f"{where}: '{key}' must end with an assistant turn")
            else:
                value = _field(row, key, where, fmt)
            sides.append(value)
        good, bad = sides
    return check_preference({"prompt": prompt, "chosen": good, "rejected": bad,
                             "category": _category(row, where)}, where)


def _sft(row: dict, fmt: str, where: str) -> dict:
    if fmt == "messages":
        messages = _turns(row.get("messages"), where, "messages", "role", "content", None)
    elif fmt == "sharegpt":
        messages = _turns(row.get("conversations"), where, "conversations", "from", "value", SHAREGPT_ROLES)
    else:
        prompt_key, answer_key = {"alpaca": ("instruction", "output"),
                                  "instruction-response": ("instruction", "response"),
                                  "question-answer": ("question", "answer")}[fmt]
        prompt = _field(row, prompt_key, where, fmt)
        if fmt == "alpaca" and _field(row, "input", where, fmt, optional=True).strip():
            prompt = f"{prompt}\n\n{row['input']}"
        messages = [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": _field(row, answer_key, where, fmt)}]
    return check_sft({"messages": messages, "category": _category(row, where)}, where)


def to_record(row: dict, fmt: str, kind: str, where: str) -> dict:
    """One raw row (columns already mapped) as an SFT or preference record of ``kind``, or a
    text record (``{text, category}``, raw material for ``synth``).

    Preference data read for SFT trains on the chosen answer; SFT data cannot become pairs."""
    if fmt == "text":
        return {"text": _field(row, "text", where, fmt), "category": _category(row, where)}
    if fmt in PREFERENCE_FORMATS:
        record = _preference(row, fmt, where)
        if kind == "sft":
            return {"messages": [*record["prompt"], {"role": "assistant", "content": record["chosen"]}],
                    "category": record["category"]}
        return record
    if kind == "preference":
        raise RecordError(f"{where}: format {fmt} has no chosen/rejected pair, but train.objective needs "
                          "preference data")
    return _sft(row, fmt, where)


def map_columns(row: dict, columns: dict[str, str]) -> dict:
    """Rename the user's columns to the format's field names."""
    return {columns.get(k, k): v for k, v in row.items()} if columns else row


def read_sft_file(path: str) -> list[dict]:
    """SFT records from a data file in any format fedtune reads (errors name file and row): the
    server's own data (defense pairs, KnowledgeSG's demonstrations)."""
    table = read_file(Path(path))
    return [to_record(row, detect_format(row, where), "sft", where) for row, where in zip(table.rows, table.where)]
