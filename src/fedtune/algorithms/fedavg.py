"""FedAvg (McMahan et al., 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data"), with an optional server learning rate.

x <- x + server_lr * reduce_i(y_i - x); with the mean reducer and server_lr = 1 this is the
weighted average of the client adapters, as in OpenFedLLM's ``fedavg``.
"""

from __future__ import annotations

from pydantic import Field

from fedtune.algorithms.aggregating import AggregatingStrategy
from fedtune.algorithms.aggregation.delta import apply_delta
from fedtune.algorithms.registry import ALGORITHMS
from fedtune.schema import Section


class FedAvgParams(Section):
    server_lr: float = Field(1.0, gt=0)  # global step size on the reduced delta


@ALGORITHMS.register("fedavg", FedAvgParams)
class FedAvg(AggregatingStrategy):
    """Federated averaging: the new global adapter is the (weighted) mean of the clients'."""

    name = "fedavg"

    def server_update(self, round, global_adapter, delta, updates):
        return apply_delta(global_adapter, delta, self.params.server_lr)
