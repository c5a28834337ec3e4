"""Client-side algorithm hooks, checked by hand on plain parameters."""

import torch

from fedtune.algorithms.fedprox import FedProxHook
from fedtune.algorithms.scaffold import (
    CLIENT_CONTROL,
    CONTROL_DELTA,
    SERVER_CONTROL,
    ScaffoldHook,
)
from fedtune.client.hooks import build_hooks
from fedtune.client.state_store import ClientStateStore
from fedtune.protocol import ClientInstruction, ClientUpdate


def _params(values):
    return {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in values.items()}


def test_fedprox_gradient_is_mu_times_distance():
    params = _params({"a": [1.0, 2.0], "b": [[0.5]]})
    hook = FedProxHook(mu=0.3)
    hook.on_round_start(params, None)
    with torch.no_grad():
        params["a"].add_(torch.tensor([0.2, -0.4], dtype=torch.float64))
        params["b"].add_(1.0)
    loss = hook.extra_loss(params)
    loss.backward()
    assert float(loss) == 0.5 * 0.3 * (0.04 + 0.16 + 1.0)
    torch.testing.assert_close(params["a"].grad, 0.3 * torch.tensor([0.2, -0.4], dtype=torch.float64))
    torch.testing.assert_close(params["b"].grad, torch.tensor([[0.3]], dtype=torch.float64))


def test_hooks_built_from_instruction(tmp_path):
    store = ClientStateStore(tmp_path)
    plain = ClientInstruction(0, 0, 0.1, 2)
    prox = ClientInstruction(0, 0, 0.1, 2, config={"prox_mu": 0.01})
    scaf = ClientInstruction(0, 0, 0.1, 2, tensors={SERVER_CONTROL: {"a": torch.zeros(1)}})
    assert build_hooks(plain, store) == []
    assert [type(h).__name__ for h in build_hooks(prox, store)] == ["FedProxHook"]
    assert [type(h).__name__ for h in build_hooks(scaf, store)] == ["ScaffoldHook"]


def test_scaffold_correction_and_option_ii_control_update(tmp_path):
    store = ClientStateStore(tmp_path)
    store.put(3, CLIENT_CONTROL, {"a": torch.tensor([0.5, -1.0], dtype=torch.float64)})
    c = {"a": torch.tensor([1.0, 1.0], dtype=torch.float64)}
    lr, steps = 0.1, 2
    ins = ClientInstruction(3, 1, lr, steps, config={"scaffold_option": 2}, tensors={SERVER_CONTROL: c})
    params = _params({"a": [2.0, 2.0]})
    hook = ScaffoldHook(ins, store)
    hook.on_round_start(params, ins)
    for _ in range(steps):  # an "optimizer step" moving by -0.1, then the hook's correction
        with torch.no_grad():
            params["a"].sub_(0.1)
        hook.after_optimizer_step(params, lr)
    # correction per step: lr * (c - c_i) = 0.1 * [0.5, 2.0]
    expected_y = torch.tensor([2.0 - 0.2 - 0.1, 2.0 - 0.2 - 0.4], dtype=torch.float64)
    torch.testing.assert_close(params["a"].detach(), expected_y)
    update = ClientUpdate(3, {"a": params["a"].detach().clone()}, 10)
    hook.on_round_end(params, update)
    c_i = torch.tensor([0.5, -1.0], dtype=torch.float64)
    new_ci = c_i - c["a"] + (torch.tensor([2.0, 2.0], dtype=torch.float64) - expected_y) / (steps * lr)
    torch.testing.assert_close(store.get(3, CLIENT_CONTROL)["a"], new_ci)
    torch.testing.assert_close(update.tensors[CONTROL_DELTA]["a"], new_ci - c_i)


def test_scaffold_option_i_uses_initial_gradient(tmp_path):
    store = ClientStateStore(tmp_path)
    c = {"a": torch.zeros(2, dtype=torch.float64)}
    ins = ClientInstruction(0, 0, 0.1, 1, config={"scaffold_option": 1}, tensors={SERVER_CONTROL: c})
    hook = ScaffoldHook(ins, store)
    assert hook.wants_initial_gradient
    params = _params({"a": [1.0, 1.0]})
    hook.on_round_start(params, ins)
    g = {"a": torch.tensor([0.3, -0.7], dtype=torch.float64)}
    hook.on_initial_gradient(g)
    update = ClientUpdate(0, {"a": params["a"].detach().clone()}, 1)
    hook.on_round_end(params, update)
    torch.testing.assert_close(store.get(0, CLIENT_CONTROL)["a"], g["a"])
    torch.testing.assert_close(update.tensors[CONTROL_DELTA]["a"], g["a"])


def test_client_state_versions_roll_back_and_prune(tmp_path):
    store = ClientStateStore(tmp_path)
    for r in range(3):
        store.round = r
        store.put(1, "s", {"v": torch.tensor([float(r)])})
    store.rollback(0)  # crash after round 0's checkpoint: rounds 1 and 2 never happened
    store.round = 1
    assert float(store.get(1, "s")["v"]) == 0.0
    store.put(1, "s", {"v": torch.tensor([10.0])})
    store.commit(1)
    assert len(list((tmp_path / "client_00001").glob("s@*.safetensors"))) == 1
    assert float(store.get(1, "s")["v"]) == 10.0
