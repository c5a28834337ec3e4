"""Offsite-tuning's emulator (Xiao, Lin, Han 2023, "Offsite-Tuning: Transfer Learning without
Full Model"; as FS-LLM ``llm/offsite_tuning/utils.py::generate_emulator_and_adapter`` builds it).

The owner keeps the bottom ``bottom`` and top ``top`` layers as the adapter layers and compresses
the middle by uniform layer drop (``round(n·(1−drop_ratio))`` of its n layers kept), optionally
distilling the kept middle into the original one on its own text. Clients get this emulator and
train the run's adapter (LoRA or DoRA) on the adapter layers only; the owner plugs the aggregated
adapter into the same layers of the full model. The original middle never leaves the owner: with
distillation no middle weight does, without it only the kept layers do.

Where fedtune differs: FS-LLM's adapter is the full bottom/top layers (every weight trainable);
here it is the run's adapter *on* those layers (the issue's "or LoRA on them"), so what travels
each round is a few MB, and FS-LLM's positional plug-in (``zip`` over state dicts) is an explicit
layer renaming. The FS-LLM default is bottom 1, top 1 of a 10-layer window; ours follows the
authors' shipped emulators (2 + 2 adapter layers, drop 0.5 of the middle).
"""

from __future__ import annotations

from pydantic import Field

from fedtune.offsite.client_side import OFFSITE, BuiltClientModel
from fedtune.offsite.distill import Comparison, DistillParams, distill
from fedtune.offsite.layers import decoder_layers, rebuild, uniform_layers
from fedtune.schema import ConfigError, Section


class EmulatorParams(Section):
    """Emulator = bottom and top adapter layers around a layer-dropped (and distilled) middle."""

    bottom: int = Field(2, ge=1)  # adapter layers at the bottom (FS-LLM emu_l)
    top: int = Field(2, ge=1)  # adapter layers at the top (L − FS-LLM emu_r)
    drop_ratio: float = Field(0.5, ge=0, lt=1)  # share of the middle layers dropped
    distill: DistillParams = DistillParams()
    # The saved emulator to use (a directory a previous run or the owner wrote); null = build it
    # from the model and keep it in the fedtune cache.
    client_model: str | None = None


@OFFSITE.register("emulator", EmulatorParams)
def build_emulator(params: EmulatorParams, model, tokenizer, seed: int) -> BuiltClientModel:
    """Offsite-tuning: bottom/top adapter layers + uniformly dropped middle, optionally distilled."""
    n = len(decoder_layers(model))
    low, high = params.bottom, n - params.top
    if high - low < 1:
        raise ConfigError(f"offsite: bottom {params.bottom} + top {params.top} leave no middle layer "
                          f"of the model's {n} to compress")
    middle = high - low
    keep = round(middle * (1 - params.drop_ratio))
    kept = [low + i for i in uniform_layers(middle, keep)]
    sources = list(range(low)) + kept + list(range(high, n))
    emulator = rebuild(model, sources)
    # the kept middle learns to stand in for the whole original middle
    trainable = [p for layer in decoder_layers(emulator)[low:low + keep] for p in layer.parameters()]
    losses = distill(emulator, model, trainable, tokenizer, params.distill,
                     Comparison(student_at=low + keep, teacher_at=high, normalized=True), seed)
    top = list(range(low + keep, low + keep + params.top))
    return BuiltClientModel(
        emulator, sources, tie=False,
        adapter_layers=list(range(low)) + top,
        server_layers={**{i: i for i in range(low)}, **{c: high + j for j, c in enumerate(top)}},
        label="emulator", personal_model=False, distill_losses=losses)
