"""Server aggregation checked against Flower's strategies (the oracle) over several rounds, and
hand-computed multi-round cases for what Flower does not implement (SCAFFOLD, OpenFedLLM variants)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategy
from flwr.supercore.task_identity import TaskIdentity

from fedtune.algorithms import ALGORITHMS, build_strategy
from fedtune.algorithms.aggregation import AggregationConfig
from fedtune.algorithms.scaffold import CONTROL_DELTA, SERVER_CONTROL
from fedtune.protocol import ClientUpdate

KEYS = {"layer.0.lora_A.weight": (4, 6), "layer.0.lora_B.weight": (6, 4), "layer.1.lora_A.weight": (4, 3)}
EXAMPLES = [10, 30, 25]


@pytest.fixture(autouse=True)
def _flower_identity():
    # Flower Messages need a run/node identity that a SuperLink normally provides.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield


def _random_state(gen, scale=1.0):
    return {k: scale * torch.randn(shape, generator=gen) for k, shape in KEYS.items()}


def _client_states(gen, x, round_):
    return [{k: v + 0.1 * (i + 1) * torch.randn(v.shape, generator=gen) for k, v in x.items()} for i in range(3)]


def _reply(state, examples):
    return Message(RecordDict({"arrays": ArrayRecord({k: v.clone() for k, v in state.items()}),
                               "metrics": MetricRecord({"num-examples": examples})}),
                   dst_node_id=1, message_type="train")


def _flower_round(strat, round_, x, states, examples):
    """What Flower's Strategy.start does around aggregation: configure_train records the arrays
    it sends (current_arrays); we set that directly instead of sampling real nodes."""
    if isinstance(strat, flwr_strategy.FedAvgM):
        strat.current_arrays = ArrayRecord({k: v.clone() for k, v in x.items()})
    elif hasattr(strat, "m_t"):
        strat.current_arrays = {k: v.numpy().copy() for k, v in x.items()}
    arrays, _ = strat.aggregate_train(round_, [_reply(s, n) for s, n in zip(states, examples)])
    # (Flower's FedAdam returns float64 arrays; compare in the dtype the adapter uses.)
    return {k: torch.from_numpy(np.array(a.numpy())).to(torch.float32) for k, a in arrays.items()}


def _strategy(name: str, num_clients: int, weighting: str = "examples", **params):
    """The registered strategy ``name`` with its parameters (``weighting`` is the aggregation's)."""
    return build_strategy(ALGORITHMS.config(name, **params), num_clients, AggregationConfig(weighting=weighting))


CASES = [
    ("fedavg", {}, lambda: flwr_strategy.FedAvg(), EXAMPLES),
    ("fedavg", {"weighting": "uniform"}, lambda: flwr_strategy.FedAvg(), [5, 5, 5]),
    ("fedprox", {"mu": 0.1}, lambda: flwr_strategy.FedProx(proximal_mu=0.1), EXAMPLES),
    ("fedavgm", {"momentum": 0.9, "server_lr": 0.7},
     lambda: flwr_strategy.FedAvgM(server_momentum=0.9, server_learning_rate=0.7), EXAMPLES),
    ("fedadagrad", {"eta": 0.1, "tau": 1e-3}, lambda: flwr_strategy.FedAdagrad(eta=0.1, tau=1e-3), EXAMPLES),
    ("fedyogi", {"eta": 0.05, "tau": 1e-3, "beta1": 0.9, "beta2": 0.99},
     lambda: flwr_strategy.FedYogi(eta=0.05, tau=1e-3, beta_1=0.9, beta_2=0.99), EXAMPLES),
    ("fedadam", {"eta": 0.1, "tau": 1e-3, "beta1": 0.9, "beta2": 0.99, "bias_correction": True},
     lambda: flwr_strategy.FedAdam(eta=0.1, tau=1e-3, beta_1=0.9, beta_2=0.99), EXAMPLES),
]


@pytest.mark.parametrize("name,params,flower,flower_examples", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_flower_over_rounds(name, params, flower, flower_examples):
    gen = torch.Generator().manual_seed(0)
    ours = _strategy(name, 3, **params)
    theirs = flower()
    x_ours = x_theirs = _random_state(gen)
    for r in range(4):
        states = _client_states(gen, x_ours, r)
        updates = [ClientUpdate(i, s, n) for i, (s, n) in enumerate(zip(states, EXAMPLES))]
        ours.configure_round(r, [0, 1, 2], 0.1, 1, x_ours)
        x_ours = ours.aggregate(r, x_ours, updates)
        # Flower sees the same client arrays, relative to its own (equal) global state.
        x_theirs = _flower_round(theirs, r, x_theirs, states, flower_examples)
        for k in KEYS:
            torch.testing.assert_close(x_ours[k], x_theirs[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["fedavgm", "fedadagrad", "fedyogi", "fedadam", "scaffold"])
def test_state_dict_round_trip_continues_identically(name):
    """Checkpoint after two rounds, restore into a fresh strategy: round three is bit-identical."""
    gen = torch.Generator().manual_seed(1)
    a = _strategy(name, 3)
    x = _random_state(gen)

    def round_(strategy, r, x, states):
        instructions = strategy.configure_round(r, [0, 1, 2], 0.1, 2, x)
        updates = []
        for ins, s in zip(instructions, states):
            u = ClientUpdate(ins.client_id, s, 10)
            if SERVER_CONTROL in ins.tensors:
                u.tensors[CONTROL_DELTA] = {k: 0.01 * v for k, v in s.items()}
            updates.append(u)
        return strategy.aggregate(r, x, updates)

    for r in range(2):
        x = round_(a, r, x, _client_states(gen, x, r))
    b = _strategy(name, 3)
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    states = _client_states(gen, x, 2)
    xa, xb = round_(a, 2, x, states), round_(b, 2, x, states)
    assert all(torch.equal(xa[k], xb[k]) for k in KEYS)


def _scalar_update(i, y, n=1, **tensors):
    return ClientUpdate(i, {"w": torch.tensor([y], dtype=torch.float64)}, n,
                        tensors={k: {"w": torch.tensor([v], dtype=torch.float64)} for k, v in tensors.items()})


def test_scaffold_server_hand_computed():
    """x <- x + lr_g * weighted mean(y_i - x); c <- c + (1/N) sum dc_i, with N = all clients."""
    s = _strategy("scaffold", 4, server_lr=0.5)
    x = {"w": torch.tensor([1.0], dtype=torch.float64)}
    ins = s.configure_round(0, [0, 2], 0.1, 3, x)
    assert float(ins[0].tensors[SERVER_CONTROL]["w"]) == 0.0
    x = s.aggregate(0, x, [_scalar_update(0, 2.0, 1, control_delta=0.4), _scalar_update(2, 4.0, 3, control_delta=-0.2)])
    # weighted mean delta = (1*1 + 3*3)/4 = 2.5 ; x = 1 + 0.5*2.5 = 2.25 ; c = 0 + (0.4 - 0.2)/4 = 0.05
    assert float(x["w"]) == pytest.approx(2.25)
    assert float(s.control["w"]) == pytest.approx(0.05)
    ins = s.configure_round(1, [1, 3], 0.1, 3, x)
    assert float(ins[1].tensors[SERVER_CONTROL]["w"]) == pytest.approx(0.05)
    x = s.aggregate(1, x, [_scalar_update(1, 2.0, 1, control_delta=0.2), _scalar_update(3, 3.0, 1, control_delta=0.2)])
    # mean delta = ((2-2.25) + (3-2.25))/2 = 0.25 ; x = 2.25 + 0.125 ; c = 0.05 + 0.4/4 = 0.15
    assert float(x["w"]) == pytest.approx(2.375)
    assert float(s.control["w"]) == pytest.approx(0.15)


def _openfedllm(name, **kw):
    return _strategy(name, 2, variant="openfedllm", eta=0.1, tau=1e-3, beta1=0.5, beta2=0.9, **kw)


def test_openfedllm_fedadam_hand_computed():
    """Unweighted mean, m = d in round 0, v starts at tau^2 and uses m^2, no bias correction."""
    s = _openfedllm("fedadam")
    x = 0.0
    m = v = None
    eta, tau, b1, b2 = 0.1, 1e-3, 0.5, 0.9
    for r, ys in enumerate([(1.0, 3.0), (0.5, -0.5), (2.0, 2.0)]):
        got = s.aggregate(r, {"w": torch.tensor([x], dtype=torch.float64)},
                          [_scalar_update(0, ys[0], 1), _scalar_update(1, ys[1], 99)])  # weights ignored
        d = sum(ys) / 2 - x
        m = d if r == 0 else b1 * m + (1 - b1) * d
        v = tau**2 if v is None else v
        v = b2 * v + (1 - b2) * m * m
        x = x + eta * m / (math.sqrt(v) + tau)
        assert float(got["w"]) == pytest.approx(x, rel=1e-12)


def test_openfedllm_fedyogi_and_fedadagrad_hand_computed():
    eta, tau, b1, b2 = 0.1, 1e-3, 0.5, 0.9
    for name in ("fedyogi", "fedadagrad"):
        s = _openfedllm(name)
        x, m, v = 0.0, None, tau**2
        for r, ys in enumerate([(1.0, 3.0), (0.5, -0.5), (2.0, 2.0)]):
            got = s.aggregate(r, {"w": torch.tensor([x], dtype=torch.float64)},
                              [_scalar_update(0, ys[0], 1), _scalar_update(1, ys[1], 7)])
            d = sum(ys) / 2 - x
            if name == "fedadagrad":
                m = d
                v = v + m * m
            else:
                m = d if r == 0 else b1 * m + (1 - b1) * d
                v = v - (1 - b2) * m * m * math.copysign(1.0, v - m * m) if v != m * m else v
            x = x + eta * m / (math.sqrt(v) + tau)
            assert float(got["w"]) == pytest.approx(x, rel=1e-12), (name, r)


def test_openfedllm_fedavgm_hand_computed():
    """m = d in round 0, then an EMA with beta1; x <- x + m (server lr not used)."""
    s = _strategy("fedavgm", 2, variant="openfedllm", beta1=0.5)
    x, m = 0.0, None
    for r, ys in enumerate([(1.0, 3.0), (0.0, 1.0), (2.0, 2.0)]):
        got = s.aggregate(r, {"w": torch.tensor([x], dtype=torch.float64)},
                          [_scalar_update(0, ys[0], 1), _scalar_update(1, ys[1], 3)])
        d = (ys[0] * 1 + ys[1] * 3) / 4 - x  # FedAvgM stays example-weighted in OpenFedLLM
        m = d if r == 0 else 0.5 * m + 0.5 * d
        x = x + m
        assert float(got["w"]) == pytest.approx(x, rel=1e-12)


def test_fedadam_without_bias_correction_follows_reddi():
    """Reddi et al. Algorithm 2: m, v from zero, no bias correction."""
    s = _strategy("fedadam", 1, eta=0.1, tau=1e-3, beta1=0.9, beta2=0.99)
    x, m, v = 0.0, 0.0, 0.0
    for r, y in enumerate([1.0, 2.0, 0.5]):
        got = s.aggregate(r, {"w": torch.tensor([x], dtype=torch.float64)}, [_scalar_update(0, y)])
        d = y - x
        m = 0.9 * m + 0.1 * d
        v = 0.99 * v + 0.01 * d * d
        x = x + 0.1 * m / (math.sqrt(v) + 1e-3)
        assert float(got["w"]) == pytest.approx(x, rel=1e-12)
