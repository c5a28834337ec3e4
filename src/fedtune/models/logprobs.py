"""Log-probabilities of responses: the one forward pass that the SFT loss, the DPO family,
difficulty scores (IFD) and evaluation share.

Labels use ``IGNORE`` (-100, the Hugging Face convention) at every position that is not part of
a response; batches are right-padded by ``collate`` and put on the model's device there. The LM
head runs only at positions whose next token is a label: on short-answer data most positions are
prompt, so this skips most of the vocabulary projection (a large share of a small model's FLOPs)
without changing any result.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from fedtune.models.adapters.state import get_adapter, set_adapter
from fedtune.models.device import model_device

IGNORE = -100  # the label of a position no loss or log-prob counts


def collate(input_ids: list[list[int]], labels: list[list[int]], pad_id: int,
            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-padded tensors on ``device``; padding is masked in attention and ignored in the loss."""
    width = max(len(x) for x in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    lab = torch.full((len(input_ids), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, (x, y) in enumerate(zip(input_ids, labels)):
        ids[row, : len(x)] = torch.tensor(x)
        lab[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids.to(device), "labels": lab.to(device), "attention_mask": mask.to(device)}


def causal_parts(model):
    """(decoder, lm_head) of a (peft-wrapped) causal LM."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(causal, causal.base_model_prefix), causal.get_output_embeddings()


def decoder_hidden(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The decoder's last hidden states at the batch's positions. With a soft-prompt adapter
    (prompt tuning, P-tuning) its virtual tokens go in front, as peft's own forward puts them,
    and their positions are cut from the result; prefix tuning's key/value prefixes go in the
    attention cache; with the adapter disabled neither is added."""
    decoder, _ = causal_parts(model)
    config = model.active_peft_config if hasattr(model, "active_peft_config") else None
    if config is None or not config.is_prompt_learning or model._adapters_disabled:
        # no KV cache: nothing reads it, and at eval batch 32 × 256 it would hold ~190 MB
        return decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       use_cache=False).last_hidden_state
    if config.peft_type.value == "PREFIX_TUNING":  # key/value prefixes in every layer's cache
        n, v = batch["input_ids"].shape[0], config.num_virtual_tokens
        mask = torch.cat([batch["attention_mask"].new_ones(n, v), batch["attention_mask"]], 1)
        return decoder(input_ids=batch["input_ids"], attention_mask=mask,
                       past_key_values=model.get_prompt(batch_size=n), use_cache=True).last_hidden_state
    embeds = decoder.get_input_embeddings()(batch["input_ids"])
    # the encoder runs on every example's own copy of the virtual-token ids (peft's get_prompt
    # encodes one copy and expands it), so per-example gradients (DP-SGD) exist; same values
    tokens = model.prompt_tokens[model.active_adapter].unsqueeze(0).expand(embeds.shape[0], -1)
    prompts = model.prompt_encoder[model.active_adapter](tokens.to(embeds.device)).to(embeds.dtype)
    mask = torch.cat([batch["attention_mask"].new_ones(embeds.shape[0], prompts.shape[1]), batch["attention_mask"]], 1)
    hidden = decoder(inputs_embeds=torch.cat([prompts, embeds], 1), attention_mask=mask,
                     use_cache=False).last_hidden_state
    return hidden[:, prompts.shape[1]:]


def response_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a label, those labels, and each one's row (flattened)."""
    _, lm_head = causal_parts(model)
    hidden = decoder_hidden(model, batch)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return lm_head(hidden[:, :-1][keep]), targets[keep], keep.nonzero()[:, 0]


def response_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-sequence sum of log p(response tokens), in fp32 (what DPO compares)."""
    logits, targets, rows = response_logits(model, batch)
    token_logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    return torch.zeros(batch["input_ids"].shape[0], dtype=token_logps.dtype, device=token_logps.device) \
        .index_add(0, rows, token_logps)


@torch.no_grad()
def mean_response_ce(model, ids: list[list[int]], labels: list[list[int]], pad_id: int, batch_size: int) -> list[float]:
    """Per sequence, the mean cross-entropy of its label tokens (IFD's and IRA's losses), in batches."""
    out = []
    for s in range(0, len(ids), batch_size):
        batch = collate(ids[s:s + batch_size], labels[s:s + batch_size], pad_id, model_device(model))
        counts = (batch["labels"][:, 1:] != IGNORE).sum(1).clamp(min=1)
        out += (-response_logps(model, batch) / counts).tolist()
    return out


def pair_batch(tokens, idx: list[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows, one forward pass for both."""
    ids = [tokens.chosen.input_ids[i] for i in idx] + [tokens.rejected.input_ids[i] for i in idx]
    labels = [tokens.chosen.labels[i] for i in idx] + [tokens.rejected.labels[i] for i in idx]
    return collate(ids, labels, pad_id, device)


@torch.no_grad()
def reference_logps(model, tokens, indices: list[int], reference, pad_id: int,
                    batch_size: int = 16) -> dict[int, tuple[float, float]]:
    """index -> (chosen, rejected) log-probs under the reference policy."""
    current = get_adapter(model) if reference is not None else None
    was_training = model.training
    model.eval()
    out = {}
    unique = sorted(set(indices))
    try:
        if reference is not None:
            set_adapter(model, reference)
        with model.disable_adapter() if reference is None else contextlib.nullcontext():
            for s in range(0, len(unique), batch_size):
                idx = unique[s : s + batch_size]
                lp = response_logps(model, pair_batch(tokens, idx, pad_id, model_device(model)))
                for j, i in enumerate(idx):
                    out[i] = (float(lp[j]), float(lp[len(idx) + j]))
    finally:
        if current is not None:
            set_adapter(model, current)
        model.train(was_training)
    return out
