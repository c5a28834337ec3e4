"""FedSP: soft prompts as messengers (Dong et al. 2023, "Tunable Soft Prompts are Messengers in
Federated Learning"; FederatedScope ``federatedscope/nlp/fedsp``).

The server keeps the full model frozen with a soft prompt; each client holds a small auxiliary
model built from it — ``layers_per_cell`` layers from ``start_layer`` repeated to ``depth`` with
their parameters shared (``share_client_layer_param``), or the first ``depth`` layers — KD-
initialised at the server (MSE between last hidden states, ``only_use_hidden_loss``), with its own
copy of the prompt. A client round alternates: the auxiliary model's weights train with the prompt
frozen, then the prompt with the model frozen (``pl_alter_train``, ``alter_model_param:
['model']``: every model weight). The weights stay on the client (its personal state); only the
prompt travels after round 0, and the server loads the averaged prompt into the full model.

Where fedtune differs: FedSP's code uploads the auxiliary model too and the server discards it;
here it is never sent. Prefix tuning (FedSP's P-tuning-v2 prompt) needs the auxiliary model to
have the server's depth; input-level prompts (prompt, p-tuning) allow any depth. FedSP's optional
server-side training of the prompt after aggregation (``make_global_train``) is not offered.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.offsite.client_side import OFFSITE, BuiltClientModel
from fedtune.offsite.distill import Comparison, DistillParams, distill
from fedtune.offsite.layers import decoder_layers, rebuild
from fedtune.schema import ConfigError, Section


class FedSPParams(Section):
    """FedSP's auxiliary model: a few of the owner's layers, repeated with shared parameters."""

    start_layer: int = Field(0, ge=0)  # client_start_layer_id
    layers_per_cell: int = Field(1, ge=1)  # num_client_layers_per_cell
    depth: int | None = Field(None, ge=1)  # num_client_layers; null = the owner model's depth
    share: bool = True  # share_client_layer_param; false = the first `depth` layers (layer drop)
    distill: DistillParams = DistillParams()  # FedSP: 5000 steps, AdamW lr 5e-4
    client_model: str | None = None  # a saved auxiliary model to use; null = build it (cached)


@OFFSITE.register("fedsp", FedSPParams)
def build_auxiliary(params: FedSPParams, model, tokenizer, seed: int) -> BuiltClientModel:
    """FedSP: a cross-layer-shared auxiliary model, KD-initialised, trained with a soft prompt."""
    n = len(decoder_layers(model))
    depth = params.depth or n
    if params.share:
        if depth % params.layers_per_cell or params.start_layer + params.layers_per_cell > n:
            raise ConfigError(f"offsite: depth {depth} must be a multiple of layers_per_cell "
                              f"{params.layers_per_cell}, and the cell must lie within the model's {n} layers")
        cell = list(range(params.start_layer, params.start_layer + params.layers_per_cell))
        sources = cell * (depth // params.layers_per_cell)
    else:
        if depth > n:
            raise ConfigError(f"offsite.depth: {depth} exceeds the model's {n} layers")
        sources = list(range(depth))
    auxiliary = rebuild(model, sources, tie=params.share)
    # every weight of the auxiliary model learns the owner's last hidden state
    losses = distill(auxiliary, model, list(auxiliary.parameters()), tokenizer, params.distill,
                     Comparison(student_at=-1, teacher_at=-1, normalized=False), seed)
    return BuiltClientModel(auxiliary, sources, tie=params.share, adapter_layers=None, server_layers=None,
                            label=None, personal_model=True, distill_losses=losses)
