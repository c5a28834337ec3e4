"""The aggregation seam: client deltas -> transforms -> reducer -> the strategy's server update."""

from __future__ import annotations

import pytest
import torch

from fedtune.adapter_state import weighted_sum
from fedtune.algorithms import ALGORITHMS, build_strategy
from fedtune.algorithms.aggregation import REDUCERS, AggregationConfig, Aggregator
from fedtune.algorithms.aggregation.delta import apply_delta, client_weights
from fedtune.protocol import ClientUpdate


def _updates(x, offsets, examples):
    return [ClientUpdate(i, {"w": x["w"] + o}, n) for i, (o, n) in enumerate(zip(offsets, examples))]


def test_mean_reducer_by_hand():
    x = {"w": torch.tensor([1.0, 2.0])}
    ups = _updates(x, [torch.tensor([1.0, 0.0]), torch.tensor([4.0, -2.0])], [1, 3])
    delta = Aggregator(AggregationConfig()).reduce(x, ups)
    assert delta["w"].dtype == torch.float64
    assert delta["w"].tolist() == [0.25 * 1 + 0.75 * 4, 0.75 * -2]
    uniform = Aggregator(AggregationConfig(weighting="uniform")).reduce(x, ups)
    assert uniform["w"].tolist() == [2.5, -1.0]
    assert client_weights(ups, "examples") == [0.25, 0.75]
    with pytest.raises(ValueError, match="no examples"):
        client_weights([ClientUpdate(0, x, 0)], "examples")


def test_fedavg_through_the_seam_is_the_weighted_average_of_adapters_bit_for_bit():
    """x + mean(y - x), in float64 and rounded once, equals mean(y): the FedAvg of OpenFedLLM."""
    gen = torch.Generator().manual_seed(0)
    x = {"a": torch.randn(64, 16, generator=gen), "b": torch.randn(16, 64, generator=gen) * 1e-3}
    ups = [ClientUpdate(i, {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in x.items()}, n)
           for i, n in enumerate([3, 5, 8])]
    ours = build_strategy(ALGORITHMS.config("fedavg"), 3).aggregate(0, x, ups)
    direct = weighted_sum([u.adapter for u in ups], [3 / 16, 5 / 16, 8 / 16])
    assert all(torch.equal(ours[k], direct[k]) for k in x)


@pytest.mark.parametrize("name", [n for n in ALGORITHMS.names()
                                  if not (ALGORITHMS[n].target.pools_data or ALGORITHMS[n].target.personal_adapters)])
def test_a_transform_applies_under_every_federated_strategy(name):
    """A transform on the deltas (here: zero them) reaches every strategy's server update: with a
    zero delta, no strategy moves the global adapter (SCAFFOLD's control still updates)."""
    x = {"w": torch.tensor([1.0, -1.0])}
    strategy = build_strategy(ALGORITHMS.config(name), 2)
    strategy.aggregator.transforms.append(lambda deltas, weights: [{k: 0 * v for k, v in d.items()} for d in deltas])
    ins = strategy.configure_round(0, [0, 1], 0.1, 1, x)
    ups = _updates(x, [torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0])], [1, 1])
    for u in ups:
        if "server_control" in ins[0].tensors:
            u.tensors["control_delta"] = {"w": torch.zeros(2)}
    new = strategy.aggregate(0, x, ups)
    assert torch.allclose(new["w"], x["w"])


def test_apply_delta_keeps_each_tensors_dtype():
    x = {"w": torch.ones(2, dtype=torch.bfloat16)}
    out = apply_delta(x, {"w": torch.full((2,), 0.5, dtype=torch.float64)}, 2.0)
    assert out["w"].dtype == torch.bfloat16 and out["w"].tolist() == [2.0, 2.0]


def test_the_reducer_is_chosen_by_config():
    assert "mean" in REDUCERS
    agg = Aggregator(AggregationConfig(reducer={"name": "mean"}))
    assert type(agg.reducer).__name__ == "Mean"
