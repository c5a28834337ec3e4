"""Simulated attackers between the clients and the server: a ``ClientExecutor`` wrapper.

The wrapped executor runs every sampled client honestly (in this process, or on Flower nodes);
then each attacker's update is replaced by the attack's crafted delta before the round loop —
and so the strategy and its reducer — sees it. The server's aggregation code never reads who
attacks; which clients did is recorded only as the simulation's ground truth (``attackers``),
so the harm can be measured (``harm``). An attack that is not omniscient can run on the
attacker's own Flower node instead (``fedtune.attacks.on_node``); ``craft_here`` is then off.
"""

from __future__ import annotations

from fedtune.adapter_state import AdapterState
from fedtune.algorithms.aggregation.delta import (
    apply_delta,
    client_delta,
    client_deltas,
    client_weights,
)
from fedtune.algorithms.aggregation.geometry import norms, weighted_sum
from fedtune.attacks.registry import ATTACKS
from fedtune.protocol import ClientInstruction, ClientUpdate


class AttackedClients:
    def __init__(self, inner, attack, attackers: list[int], seed: int = 0, craft_here: bool = True):
        self.inner = inner
        self.attack = ATTACKS[attack.method].target(attack, seed)
        self.attackers, self.craft_here = set(attackers), craft_here

    def begin(self, first_round: int) -> None:
        self.inner.begin(first_round)

    def execute(self, round: int, work: list[tuple[ClientInstruction, AdapterState]]):
        replies = self.inner.execute(round, work)
        starts = {ins.client_id: start for ins, start in work}
        bad = [(ins, u) for ins, u in replies.updates if ins.client_id in self.attackers]
        replies.attackers = [ins.client_id for ins, _ in bad]
        if not bad or not self.craft_here:
            return replies
        good = [u for ins, u in replies.updates if ins.client_id not in self.attackers]
        own = [client_delta(u, starts[ins.client_id]) for ins, u in bad]
        benign = [client_delta(u, starts[u.client_id]) for u in good] if self.attack.omniscient else []
        crafted = self.attack.craft(own, benign, round, [ins.client_id for ins, _ in bad])
        for (ins, update), delta in zip(bad, crafted):
            update.adapter = apply_delta(starts[ins.client_id], delta)
        return replies


def harm(global_adapter: AdapterState, new_adapter: AdapterState, benign: list[ClientUpdate],
         weighting: str) -> dict[str, float]:
    """How far the round's global update went from where the benign clients alone would have
    taken it: ||(x' − x) − mean_benign(y_i − x)||, beside the benign mean's own norm for scale."""
    if not benign:
        return {}
    target = weighted_sum(client_deltas(benign, global_adapter), client_weights(benign, weighting))
    step = {k: new_adapter[k].double() - x.double() for k, x in global_adapter.items()}
    gap = {k: step[k] - target[k] for k in step}
    cosine = sum(float((step[k] * target[k]).sum()) for k in step)
    sizes = norms([step, target])
    return {"distance_from_benign_mean": norms([gap])[0], "benign_mean_norm": sizes[1],
            "cosine_to_benign_mean": cosine / (sizes[0] * sizes[1]) if sizes[0] and sizes[1] else 0.0}


def on_node(attack, attackers: list[int], seed: int, update: ClientUpdate, start: AdapterState, round: int) -> ClientUpdate:
    """Run a non-omniscient attack on the attacker's own node (Flower): the node replaces its
    own honest update; nothing but the tampered adapter leaves the node."""
    if update.client_id not in attackers:
        return update
    attack_impl = ATTACKS[attack.method].target(attack, seed)
    (delta,) = attack_impl.craft([client_delta(update, start)], [], round, [update.client_id])
    update.adapter = apply_delta(start, delta)
    return update
