"""A causal LM's decoder layers, and a copy of it built from a chosen sequence of them.

Both stand-ins for the owner's model are such copies: offsite-tuning's emulator keeps every
bottom and top layer and a uniform subset of the middle (FS-LLM ``drop_layer``); FedSP's
auxiliary model repeats a few layers to the full depth with their parameters shared.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from fedtune.schema import ConfigError

LAYOUT = "client_model.json"  # what the client model's directory holds besides HF's config


def _decoder(model):
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model", "transformer"):  # Llama/Mistral/Qwen: model.layers; GPT-2: transformer.h
        inner = getattr(causal, path, None)
        for name in ("layers", "h"):
            if inner is not None and isinstance(getattr(inner, name, None), torch.nn.ModuleList):
                return inner, name
    raise ConfigError(f"offsite: cannot find the decoder layers of {type(causal).__name__} "
                      "(supported: model.layers as in Llama, transformer.h as in GPT-2)")


def decoder_layers(model) -> torch.nn.ModuleList:
    inner, name = _decoder(model)
    return getattr(inner, name)


def uniform_layers(n: int, keep: int) -> list[int]:
    """FS-LLM's uniform layer drop: ``keep`` of ``n`` layers at the stride int(i·(n−1)/(keep−1)),
    first and last included (``offsite_tuning/kd_trainer``/``utils.drop_layer``)."""
    if keep <= 0:
        return []
    if keep == 1:
        return [0]
    return [int(i * (n - 1) / (keep - 1)) for i in range(keep)]


def _tie(layer: torch.nn.Module, to: torch.nn.Module) -> None:
    """Make every parameter of ``layer`` the same Parameter object as ``to``'s (shared weights,
    separate modules: each keeps its own ``layer_idx`` for the attention cache)."""
    for name, param in to.named_parameters():
        owner, _, leaf = name.rpartition(".")
        setattr(layer.get_submodule(owner) if owner else layer, leaf, param)


def _renumber(layer: torch.nn.Module, index: int) -> None:
    for module in layer.modules():
        if hasattr(module, "layer_idx"):
            module.layer_idx = index


def rebuild(model, sources: list[int], tie: bool = False) -> torch.nn.Module:
    """A deep copy of ``model`` whose decoder layers are ``model``'s layers ``sources``, in that
    order. With ``tie``, a source used twice shares its parameters (cross-layer sharing)."""
    client = copy.deepcopy(model)
    inner, name = _decoder(client)
    old, first, new = getattr(inner, name), {}, []
    for i, s in enumerate(sources):
        if s in first:
            layer = copy.deepcopy(old[s])
            if tie:
                _tie(layer, new[first[s]])
        else:
            layer, first[s] = old[s], i
        _renumber(layer, i)
        new.append(layer)
    setattr(inner, name, torch.nn.ModuleList(new))
    client.config.num_hidden_layers = len(new)
    if getattr(client.config, "layer_types", None):
        client.config.layer_types = [client.config.layer_types[s] for s in sources]
    return client


def save_client_model(model, directory: Path, sources: list[int], tie: bool, meta: dict) -> None:
    """Write the client model as HF config + safetensors (shared tensors once) + its layout."""
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(directory))
    save_model(model, str(directory / "model.safetensors"))
    (directory / LAYOUT).write_text(json.dumps({"sources": sources, "tie": tie, **meta}, indent=1))


def load_client_model(directory: Path):
    """The client model ``save_client_model`` wrote (fp32, eval mode)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    layout_file = Path(directory) / LAYOUT
    if not layout_file.is_file():
        raise ConfigError(f"offsite.client_model: {directory} holds no client model ({LAYOUT} missing)")
    layout = json.loads(layout_file.read_text())
    config = AutoConfig.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if layout["tie"]:
        layers, first = decoder_layers(model), {}
        for i, s in enumerate(layout["sources"]):
            if s in first:
                _tie(layers[i], layers[first[s]])
            else:
                first[s] = i
    load_model(model, str(Path(directory) / "model.safetensors"))
    return model.eval(), layout
