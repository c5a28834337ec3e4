"""FedDQC's data-quality control on each client (Du et al., Findings of ACL 2025; authors' code
``main_sft.py`` and ``fed/split_dataset.py::progressive_get_dataset_this_round``):

1. score every local example with the current global model (``scores``), the first round the
   client trains (and, with ``rescore_each_stage``, again at the first round of each later stage,
   the paper's adaptive assessment, not in the released code);
2. keep the top ``select_rate`` share by score (the code's rate-based filter; ``threshold`` keeps
   scores ≥ τ instead);
3. the quality-aware hierarchical schedule: the run's rounds split into ``stages`` equal spans
   (stage(r) = min(r // (R // S), S − 1)); in stage s the client trains on the s-th of S equal bands
   of its kept examples sorted by score, highest first (``easy_to_hard``) or lowest first; ``none``
   trains on all kept examples every round.

The scores live in the client's state store (with the stage they were computed for), so a
resumed run scores, filters and schedules exactly as an uninterrupted one; ``random`` draws from
(run seed, client). What a round used is in the client's training metrics (``quality_*``).
"""

from __future__ import annotations

import math
import time

import torch

from fedtune.client.batching import round_rng
from fedtune.quality.config import QualityConfig
from fedtune.quality.scores import quality_scores

SCORES = "quality_scores"  # ClientStateStore name: {"scores": [n], "stage": [1]}


def stage_of(round: int, rounds: int, stages: int) -> int:
    """The authors' stage of a round: equal spans of R // S rounds, the remainder in the last."""
    span = max(1, rounds // stages)
    return min(round // span, stages - 1)


def kept(scores: list[float], q: QualityConfig) -> list[int]:
    """Indices kept by the filter, sorted by score, highest first (ties by index)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if q.threshold is not None:
        return [i for i in order if scores[i] >= q.threshold]
    if q.select_rate is not None:
        return order[: max(1, int(len(order) * q.select_rate))]
    return order


def band(order: list[int], stage: int, q: QualityConfig) -> list[int]:
    """The stage's share of the kept examples (the authors' floor(n/S)-sized chunks)."""
    if q.order == "none" or q.stages == 1:
        return order
    ranked = order if q.order == "easy_to_hard" else order[::-1]
    size = max(1, len(ranked) // q.stages)
    return ranked[stage * size:(stage + 1) * size] or ranked[-size:]


class DataQuality:
    """The run's quality control; ``rounds`` is the run's (for the stage schedule)."""

    def __init__(self, q: QualityConfig, rounds: int, seed: int):
        self.q, self.rounds, self.seed = q, rounds, seed

    def pool(self, trainer, client_id: int, round: int, tokens) -> tuple[list[int], dict]:
        """The example indices client ``client_id`` may draw from in ``round``, and what to report.
        The model holds the global adapter the client starts from."""
        q = self.q
        stage = stage_of(round, self.rounds, q.stages)
        saved = trainer.store.get(client_id, SCORES)
        fresh = saved is None or (q.rescore_each_stage and int(saved["stage"][0]) < stage)
        seconds = 0.0
        if fresh:
            started = time.perf_counter()
            sft = tokens.chosen if hasattr(tokens, "chosen") else tokens  # DPO: the prompt and chosen answer
            scores = quality_scores(q.score, trainer.model, sft, trainer.pad_id, q.batch_size,
                                    round_rng(self.seed, stage, client_id, "quality"))
            trainer.store.put(client_id, SCORES, {"scores": torch.tensor(scores, dtype=torch.float64),
                                                  "stage": torch.tensor([stage])})
            seconds = time.perf_counter() - started
        else:
            scores = saved["scores"].tolist()
        order = kept(scores, q)
        pool = band(order, stage, q)
        return pool, {"quality_stage": stage, "quality_kept": len(order), "quality_dropped": len(scores) - len(order),
                      "quality_pool": len(pool), "quality_score_mean": _mean(scores, range(len(scores))),
                      "quality_pool_score_mean": _mean(scores, pool), "seconds_scoring": seconds}


def _mean(scores: list[float], idx) -> float:
    """Mean of the finite scores at ``idx`` (IFD's -inf marks dropped examples); 0 if none."""
    finite = [scores[i] for i in idx if math.isfinite(scores[i])]
    return sum(finite) / len(finite) if finite else 0.0


def data_quality(cfg) -> DataQuality | None:
    """The run's quality control (``cfg`` a RunConfig), None without ``quality``."""
    return DataQuality(cfg.quality, cfg.federation.rounds, cfg.seed) if cfg.quality is not None else None
