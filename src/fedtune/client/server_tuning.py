"""The server's own SFT of the global adapter on records it holds: the post-hoc safety defense's
fine-tune and KnowledgeSG's fine-tune on its refined synthetic data share it.

It runs the clients' ``LocalTrainer`` under client id ``SERVER`` (its own RNG stream), so it is
deterministic in (seed, round) and a resumed run redoes an interrupted fine-tune identically.
"""

from __future__ import annotations

from fedtune.adapter_state import AdapterState
from fedtune.client.objectives import OBJECTIVES
from fedtune.client.trainer import LocalData, LocalTrainer
from fedtune.data.tokenize import tokenize_sft
from fedtune.protocol import ClientInstruction

SERVER = -1  # the client id the server's own training runs under (its RNG stream)


class ServerTuner:
    """SFT steps on the server's records, from a given adapter (fresh optimizer state each time)."""

    def __init__(self, cfg, model, tokenizer, store, batch_size: int | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        train = cfg.train.model_copy(update={"objective": OBJECTIVES.config("sft"), "optimizer_state": "fresh",
                                             "batch_size": batch_size or cfg.train.batch_size})
        self.trainer = LocalTrainer(model, tokenizer, train, store, seed=cfg.seed)

    def tune(self, round: int, start: AdapterState, records: list[dict], steps: int,
             lr: float | None = None) -> tuple[AdapterState, float]:
        """(the tuned adapter, its training loss) after ``steps`` SFT steps on ``records``."""
        d = self.cfg.data
        tokens = tokenize_sft(records, self.tokenizer, d.max_length, d.system_prompt)
        ins = ClientInstruction(client_id=SERVER, round=round, lr=lr or self.cfg.train.lr, steps=steps)
        update = self.trainer.train(ins, start, LocalData(SERVER, tokens))
        return update.adapter, update.metrics["loss"]
