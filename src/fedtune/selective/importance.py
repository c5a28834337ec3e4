"""Layer importance from a client's gradient probe (``fedtune.client.gradient_probe``), as the
authors' code scores layers (Sun et al., ISIT 2025, ``client.py::init_train``). For layer l with
adapter tensors T_l:
- ``grad_norm`` (the code's ``diff``): Σ_{k∈T_l} Σ_t ‖G_t,k‖², the squared norm of the running
  gradient summed over batches;
- ``rgn``: that over Σ_{k∈T_l} Σ_t ‖θ_k‖² (the code divides the two running sums of squares);
- ``snr``: Σ_{k∈T_l} mean(G_k)² / std(G_k), G the whole-data gradient (the code's ``grad`` pass).
"""

from __future__ import annotations

import torch

from fedtune.selective.layers import layer_of


def layer_scores(stats: dict[str, torch.Tensor], layers: list[int], metric: str) -> list[float]:
    """One score per layer of ``layers`` from the per-tensor [grad_sq, param_sq, snr]."""
    sums = {layer: torch.zeros(3, dtype=torch.float64) for layer in layers}
    for key, s in stats.items():
        layer = layer_of(key)
        if layer is None:  # a common tensor (always trained): not a candidate
            continue
        if layer not in sums:
            raise ValueError(f"gradient probe: tensor {key!r} is not in a candidate layer {layers}")
        sums[layer] += s
    if metric == "grad_norm":
        return [float(sums[l][0]) for l in layers]
    if metric == "rgn":
        return [float(sums[l][0] / sums[l][1]) if sums[l][1] > 0 else 0.0 for l in layers]
    return [float(sums[l][2]) for l in layers]
