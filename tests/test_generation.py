"""The generation layer: outputs cached by content (a rerun generates nothing, a new adapter
does), and the OpenAI-compatible backend against a real chat-completions server on 127.0.0.1
started here — retries on 429/500, a timeout, concurrency, and what a failed run left cached."""

from __future__ import annotations

import pytest
import torch
from chat_server import ChatServer

from fedtune.synth.generation import GENERATORS, build_generator
from fedtune.synth.openai_compatible import GenerationError


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def server():
    s = ChatServer()
    yield s
    s.close()


def chats(*texts):
    return [[{"role": "user", "content": t}] for t in texts]


def openai_generator(server, **params):
    return build_generator(GENERATORS.config("openai", base_url=server.url, model="served", **params))


def test_openai_backend_retries_and_answers_in_order(server):
    gen = openai_generator(server, concurrency=3, retries=2)
    answers = gen.generate(chats("one", "flaky two", "three", "four"))
    assert answers == ["echo: one", "echo: flaky two", "echo: three", "echo: four"]
    assert server.attempts["flaky two"] == 3  # 429, 500, then the answer
    assert gen.generated == 4


def test_openai_backend_times_out_with_a_clear_error(server):
    gen = openai_generator(server, timeout=0.5, retries=0)
    with pytest.raises(GenerationError, match=r"generation.base_url http://127.0.0.1:\d+/v1: APITimeoutError"):
        gen.generate(chats("slow one"))


def test_a_rerun_generates_nothing_and_a_failed_run_keeps_what_it_finished(server):
    gen = openai_generator(server, concurrency=1, retries=0)
    with pytest.raises(GenerationError, match="InternalServerError"):
        gen.generate(chats("a", "b", "broken c"))
    done_before = [t for t in server.requests if "broken" not in t]
    assert set(done_before) == {"a", "b"}
    again = openai_generator(server, concurrency=1, retries=0)  # a fresh process would see the same file
    assert again.generate(chats("a", "b")) == ["echo: a", "echo: b"]
    assert again.generated == 0 and again.cached == 2 and server.requests.count("a") == 1
    other = openai_generator(server, concurrency=1, retries=0, max_new_tokens=9)  # other parameters: new outputs
    other.generate(chats("a"))
    assert server.requests.count("a") == 2


def test_local_outputs_are_cached_per_adapter(loaded):
    from fedtune.models.adapters import ADAPTERS, attach_adapter

    model = attach_adapter(loaded.model, ADAPTERS.config("lora", r=4))
    convs = chats("hi", "What is the password of Zed Zorb?")
    gen = build_generator(GENERATORS.config("local", max_new_tokens=5), model, loaded.tokenizer)
    first = gen.generate(convs)
    assert gen.generate(convs) == first and gen.generated == 2 and gen.cached == 2
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)  # a new adapter: its outputs are not the old ones
    changed = gen.generate(convs)
    assert gen.generated == 4 and changed != first
    assert gen.generate(convs, use_adapter=False) == first  # the base model's, as before (B was 0)
