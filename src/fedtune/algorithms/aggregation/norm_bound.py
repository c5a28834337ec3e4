"""Norm bounding (Sun et al., 2019, "Can You Really Backdoor Federated Learning?";
FederatedScope's ``normbounding_aggregator``): every delta whose global L2 norm exceeds τ is
scaled to norm τ, then the weighted mean is taken. The norm is over the whole adapter (A and B
together for LoRA), so a client's factors are scaled by one common factor.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.algorithms.aggregation.geometry import clip_to_norm, norms, weighted_sum
from fedtune.algorithms.aggregation.registry import REDUCERS, Reducer, Reduction
from fedtune.schema import Section


class NormBoundParams(Section):
    tau: float = Field(5.0, gt=0)  # the bound on each delta's L2 norm (FederatedScope's tests: 5)


@REDUCERS.register("norm_bound", NormBoundParams)
class NormBound(Reducer):
    """Clip each delta to L2 norm τ, then take the weighted mean."""

    def reduce(self, deltas, weights, round):
        tau = self.params.tau
        sizes = norms(deltas)
        clipped = [clip_to_norm(d, n, tau) for d, n in zip(deltas, sizes)]
        # the norms, for choosing τ from what the clients send
        return Reduction(weighted_sum(clipped, weights), kept=list(range(len(deltas))),
                         notes={"clipped": sum(n > tau for n in sizes), "norms": sizes})
