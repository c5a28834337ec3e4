"""Every registered adapter method: the adapter state moves as tensors, only the method's own
parameters train, a 2-round run changes them, and an interrupted run resumes to the same adapter
bit for bit; each method saves a PEFT adapter that ``PeftModel.from_pretrained`` loads."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_in_round, run_config
from peft import PeftModel
from safetensors.torch import load_file

from fedtune.engine.runner import run_experiment
from fedtune.engine.workspace import build_workspace
from fedtune.models.adapters import ADAPTERS
from fedtune.models.adapters.state import adapter_parameters
from fedtune.models.loader import tiny_random
from fedtune.models.logprobs import causal_parts, collate, decoder_hidden

# what each method's tensors are called in the adapter state
OWN_TENSORS = {"lora": ("lora_A", "lora_B"), "dora": ("lora_A", "lora_B", "lora_magnitude_vector"), "ia3": ("ia3_l",),
               "prompt": ("prompt_encoder.embedding",), "p-tuning": ("prompt_encoder.",),
               "prefix": ("prompt_encoder.embedding",)}
PEFT_TYPE = {"lora": "LORA", "dora": "LORA", "ia3": "IA3", "prompt": "PROMPT_TUNING", "p-tuning": "P_TUNING",
             "prefix": "PREFIX_TUNING"}


def test_every_registered_method_is_covered():
    assert set(ADAPTERS.names()) == set(OWN_TENSORS)


@pytest.mark.parametrize("method", sorted(OWN_TENSORS))
def test_a_method_trains_its_own_tensors_and_resumes_bit_identical(tmp_path, loaded, method):
    extra = {"model.adapter": {"method": method}, "federation.rounds": 2, "eval.every": 0}
    whole = run_config(tmp_path, "whole", **extra)
    ws = build_workspace(whole, loaded)
    start = ws.initial_adapter
    assert start and all(any(part in k for part in OWN_TENSORS[method]) for k in start)
    assert set(adapter_parameters(ws.model)) == set(start)  # every state tensor is a trainable parameter
    run_experiment(whole, loaded=loaded, progress=False)
    final = _last_global(whole)
    assert final.keys() == start.keys()
    assert any(not torch.equal(final[k], start[k]) for k in start)  # training moved the method's tensors

    cut = run_config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=1)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    resumed = _last_global(cut)
    assert all(torch.equal(final[k], resumed[k]) for k in final)

    reloaded = PeftModel.from_pretrained(tiny_random(loaded.tokenizer).model, str(whole.run_dir() / "adapter"))
    assert reloaded.peft_config["default"].peft_type.value == PEFT_TYPE[method]


def _last_global(cfg) -> dict:
    """The run's final global adapter state (the checkpoint's; adapter/ is peft's own format)."""
    ckpt = cfg.run_dir() / "checkpoints"
    return load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "global_adapter.safetensors"))


@pytest.mark.parametrize("method", ["prompt", "p-tuning", "prefix"])
def test_a_soft_prompt_forward_is_peft_own(tmp_path, loaded, method):
    """fedtune's decoder pass (virtual tokens in front, their positions cut) gives the logits of
    peft's own forward at every real position; with the adapter disabled, the base model's."""
    cfg = run_config(tmp_path, "x", **{"model.adapter": {"method": method, "num_virtual_tokens": 5}})
    ws = build_workspace(cfg, loaded)
    model, tokens = ws.model.eval(), ws.train_tokens[0]
    batch = collate(tokens.input_ids[:3], tokens.labels[:3], ws.tokenizer.pad_token_id)
    real = batch["attention_mask"].bool()
    _, lm_head = causal_parts(model)
    with torch.no_grad():
        ours = lm_head(decoder_hidden(model, batch))
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        theirs = theirs if method == "prefix" else theirs[:, 5:]  # prefixes live in the cache, not the sequence
        assert torch.allclose(ours[real], theirs[real], atol=1e-5)
        with model.disable_adapter():
            plain = model.get_base_model()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            assert torch.allclose(lm_head(decoder_hidden(model, batch))[real], plain[real], atol=1e-5)
        assert not torch.allclose(ours[real], plain[real], atol=1e-3)  # the prompt does change the output
