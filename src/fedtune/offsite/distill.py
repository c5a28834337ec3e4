"""Server-side alignment of a client model with the owner's full model, on the owner's text.

Offsite-tuning (Xiao et al. 2023; FS-LLM ``align_student_with_teacher``) distils the emulator's
compressed middle into the original middle: kd_weight·mean(((h_t − h_s)/rms(h_t))²) +
lm_weight·LM loss, the hidden states taken where the middle ends. FedSP (FederatedScope ``fedsp``,
``pl_init_kd`` with ``only_use_hidden_loss``) distils the whole auxiliary model: MSE between the
last hidden states. Both are ``align`` with a different comparison point and trainable set.
The rms normaliser is per token over the hidden dimension: our reading of FS-LLM's KDTrainer
(UNVERIFIED against its exact reduction).
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass

import torch
from pydantic import Field
from rich.progress import track

from fedtune.data.formats import detect_format, to_record
from fedtune.data.sources import read_source
from fedtune.data.tokenize import TokenizedSet, tokenize_sft
from fedtune.models.device import model_device
from fedtune.models.logprobs import IGNORE, collate
from fedtune.schema import ConfigError, Section

log = logging.getLogger("fedtune")


class DistillParams(Section):
    """Server-side distillation of the client model on the owner's own text (never the clients')."""

    # The owner's text: a JSONL/JSON/CSV/parquet file, a directory or hf:NAME of SFT-shaped
    # records; required when steps > 0.
    source: str | None = None
    steps: int = Field(0, ge=0)  # 0 = no distillation (the plain layer-dropped copy)
    lr: float = Field(1e-4, gt=0)  # AdamW, as the FS-LLM example YAMLs (lr 1e-4)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(256, ge=8)
    limit: int | None = Field(None, ge=1)  # read at most this many records of the source
    kd_weight: float = Field(1.0, ge=0)
    lm_weight: float = Field(0.0, ge=0)  # the FS-LLM example YAMLs: lm 0, kd 1


@dataclass
class Comparison:
    """Where student and teacher are compared: hidden-state indices (``output_hidden_states``
    numbering: 0 = embeddings, i = after layer i−1, −1 = the final normed output) and whether the
    squared error is normalised by the teacher's per-token RMS."""

    student_at: int
    teacher_at: int
    normalized: bool


def owner_tokens(params: DistillParams, tokenizer) -> TokenizedSet:
    """The owner's distillation text, tokenized with the run's chat template."""
    table = read_source(params.source, limit=params.limit)
    fmt = detect_format(table.rows[0], table.where[0])
    records = [to_record(row, fmt, "sft", where) for row, where in zip(table.rows, table.where)]
    return tokenize_sft(records, tokenizer, params.max_length)


def align(student, teacher, trainable: list[torch.nn.Parameter], tokens: TokenizedSet, params: DistillParams,
          at: Comparison, pad_id: int, seed: int) -> list[float]:
    """``params.steps`` AdamW steps on ``trainable`` (the student's), batches drawn with ``seed``;
    returns the loss of every step. Both models must take the same input ids."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(trainable, lr=params.lr)
    for p in student.parameters():  # only ``trainable`` gets gradients
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    student.train()
    losses = []
    try:
        for _ in track(range(params.steps), description="distilling the client model", transient=True,
                       disable=not sys.stderr.isatty()):
            idx = [rng.randrange(len(tokens)) for _ in range(params.batch_size)]
            batch = collate([tokens.input_ids[i] for i in idx], [tokens.labels[i] for i in idx], pad_id,
                            model_device(student))
            with torch.no_grad():
                target = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True).hidden_states[at.teacher_at]
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"] if params.lm_weight else None, output_hidden_states=True)
            diff = out.hidden_states[at.student_at] - target
            if at.normalized:
                diff = diff / target.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)
            mask = batch["attention_mask"].unsqueeze(-1).to(diff.dtype)
            loss = params.kd_weight * (diff.pow(2) * mask).sum() / (mask.sum() * diff.shape[-1])
            if params.lm_weight and (batch["labels"] != IGNORE).any():
                loss = loss + params.lm_weight * out.loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    finally:
        student.eval()
        for p in trainable:
            p.requires_grad_(False)
    if losses:
        log.info("distilled the client model: loss %.4g -> %.4g over %d steps", losses[0], losses[-1], len(losses))
    return losses


def distill(student, teacher, trainable: list[torch.nn.Parameter], tokenizer, params: DistillParams,
            at: Comparison, seed: int) -> list[float]:
    """``align`` on the owner's text when ``params.steps`` > 0 (which needs ``params.source``);
    the step losses, empty without distillation."""
    if not params.steps:
        return []
    if not params.source:
        raise ConfigError("offsite.distill.source: distillation (steps > 0) needs the owner's text")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return align(student, teacher, trainable, owner_tokens(params, tokenizer), params, at, pad, seed)
