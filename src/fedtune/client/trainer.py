"""LocalTrainer: one client's local training for one round, as a lean loop of our own.

No per-round Trainer construction and no re-tokenization: the base model is loaded once, only
the LoRA tensors are swapped, the data arrives tokenized. A round is ``instruction.steps``
optimizer steps of ``batch_size x grad_accum`` examples at the round's learning rate, with
FL-algorithm behaviour injected through hooks (fedtune.client.hooks). With sample-level DP
(``privacy.sample_level``) a step is a Poisson sample and its gradient DP-SGD's
(``fedtune.privacy.dp_sgd``). The model's device decides the precision (``fedtune.precision``):
fp16 autocast scales the loss with a GradScaler, which is a pass-through in every other case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fedtune.adapter_state import AdapterState, clone
from fedtune.client.alternating import alternating_round
from fedtune.client.batching import draw_indices, length_grouped_batches, round_rng
from fedtune.client.gradient_probe import PROBE, gradient_probe
from fedtune.client.hooks import build_hooks
from fedtune.client.objectives import OBJECTIVES
from fedtune.client.state_store import ClientStateStore
from fedtune.client.train_config import TrainConfig
from fedtune.data.task_stream import TaskStream
from fedtune.data.tokenize import PreferenceTokens, TokenizedSet
from fedtune.models.adapters.state import adapter_parameters, get_adapter, set_adapter
from fedtune.models.checkpointing import set_gradient_checkpointing
from fedtune.models.device import model_device
from fedtune.precision import Precision, precision_for
from fedtune.protocol import ClientInstruction, ClientUpdate

if TYPE_CHECKING:  # built by the engine from privacy.sample_level (the privacy package uses this one)
    from fedtune.privacy.dp_sgd import DPSGDRound, SampleLevelPrivacy
    from fedtune.quality.feddqc import DataQuality

OPTIMIZER_STATE = "optimizer"


@dataclass
class LocalData:
    """A client's tokenized training set and the size it reports for weighting."""

    client_id: int
    tokens: TokenizedSet | PreferenceTokens
    stream: TaskStream | None = None  # lifelong tasks: which examples each round may use (data.schedule)

    @property
    def num_examples(self) -> int:
        return len(self.tokens)


class LocalTrainer:
    """``reference`` (preference objectives): None = the base model (adapter disabled), or a
    frozen adapter state such as the SFT stage's result. ``personal_start`` (FedSP): the model
    weights a client starts from; each client then trains its own copy of them, alternating with
    the adapter (``fedtune.client.alternating``)."""

    def __init__(self, model, tokenizer, cfg: TrainConfig, store: ClientStateStore, seed: int = 0,
                 reference: AdapterState | None = None, privacy: "SampleLevelPrivacy | None" = None,
                 quality: "DataQuality | None" = None, personal_start: AdapterState | None = None):
        self.model, self.tokenizer, self.cfg, self.store, self.seed = model, tokenizer, cfg, store, seed
        self.personal_start = personal_start
        self.privacy = privacy  # DP-SGD settings, or None
        self.quality = quality  # data-quality control (FedDQC), or None
        self.precision = precision_for(cfg.bf16, model_device(model))
        if privacy is not None and self.precision.loss_scaling:
            # DP-SGD clips per-example gradients of the unscaled loss: fp16 without scaling underflows
            self.precision = Precision(self.precision.device_type)
        set_gradient_checkpointing(model, cfg.gradient_checkpointing)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.objective = OBJECTIVES[cfg.objective.name].target(cfg.objective, reference)
        self.client_id, self.round_seed = 0, 0

    # ------------------------------------------------------------------ the round

    def train(self, instruction: ClientInstruction, start: AdapterState, data: LocalData) -> ClientUpdate:
        """One round of local training from ``start``; for a gradient probe (selective layers'
        importance) the probe's statistics instead."""
        if PROBE in instruction.config:
            return gradient_probe(self, instruction, start, data)
        if self.personal_start is not None:
            return alternating_round(self, instruction, start, data)
        set_adapter(self.model, start)
        params = adapter_parameters(self.model)
        keys = instruction.train_keys(params)
        if keys is None:
            return self._train(instruction, data, params)
        chosen = set(keys)
        frozen = [p for k, p in params.items() if k not in chosen]
        for p in frozen:  # selective layers: only the chosen layers' tensors train (and travel)
            p.requires_grad_(False)
        try:
            return self._train(instruction, data, {k: params[k] for k in keys})
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def _train(self, instruction: ClientInstruction, data: LocalData, params, federated: bool = True) -> ClientUpdate:
        """``instruction.steps`` steps on ``params``; ``federated=False`` trains weights that never
        leave the client (FedSP's model phase): no FL hooks, no persisted optimizer state."""
        started = time.perf_counter()
        cfg = self.cfg
        persist = federated and cfg.optimizer_state == "persist"
        optimizer = torch.optim.AdamW(params.values(), lr=instruction.lr, weight_decay=cfg.weight_decay)
        self.scaler = self.precision.scaler()
        if persist:
            self._load_optimizer(optimizer, params, instruction.client_id)
        hooks = build_hooks(instruction, self.store) if federated else []
        for hook in hooks:
            hook.on_round_start(params, instruction)

        rng = round_rng(self.seed, instruction.round, instruction.client_id, "batches")
        pool, quality_metrics = list(range(data.num_examples)), {}
        if data.stream is not None:  # lifelong tasks: the current task and the replay buffer
            pool = data.stream.pool(instruction.round)
        if self.quality is not None:  # FedDQC: the examples this round may use, scored by the global model
            pool, quality_metrics = self.quality.pool(self, instruction.client_id, instruction.round, data.tokens)
        if self.privacy is not None:  # DP-SGD: Poisson-sampled steps (or its shuffle alternative)
            steps = self.privacy.batches(data.num_examples, instruction.steps, rng)
        else:
            per_step = cfg.batch_size * cfg.grad_accum
            drawn = draw_indices(len(pool), per_step * instruction.steps, rng)
            steps = [[pool[i] for i in drawn[s * per_step : (s + 1) * per_step]] for s in range(instruction.steps)]
        picked = [i for step in steps for i in step]
        lengths = self.objective.lengths(data.tokens)
        self.client_id = instruction.client_id
        self.round_seed = hash((self.seed, instruction.round, instruction.client_id)) & 0xFFFFFFFF
        torch.manual_seed(self.round_seed)
        self.objective.begin_round(self, data.tokens, picked)

        self.model.train()
        compute_started = time.perf_counter()
        dp = self._begin_dp(instruction, data, hooks)
        if any(h.wants_initial_gradient for h in hooks):
            self._backward_step(data, steps[0], rng, params, [])
            scale = self.scaler.get_scale()  # 1.0 unless fp16 scales the loss
            grads = clone({k: p.grad / scale for k, p in params.items()})  # on the CPU, as the hooks' states
            optimizer.zero_grad(set_to_none=True)
            for hook in hooks:
                hook.on_initial_gradient(grads)
        loss_sum, token_count, dp_metrics = 0.0, 0, {}
        try:
            for step_idx in steps:
                if dp is None:
                    step_loss, step_tokens = self._backward_step(data, step_idx, rng, params, hooks)
                    if cfg.max_grad_norm:
                        self.scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
                else:
                    step_loss, step_tokens = self._dp_backward_step(data, step_idx, rng, params, hooks, dp)
                loss_sum += step_loss
                token_count += step_tokens
                self.scaler.step(optimizer)  # skipped (and the scale lowered) when fp16 overflowed
                self.scaler.update()
                optimizer.zero_grad(set_to_none=True)
                for hook in hooks:
                    hook.after_optimizer_step(params, instruction.lr)
        finally:
            if dp is not None:
                dp_metrics = dp.close()
        self.model.eval()
        compute_seconds = time.perf_counter() - compute_started
        self.objective.end_round(self)

        if persist:
            self._save_optimizer(optimizer, params, instruction.client_id)
        update = ClientUpdate(
            client_id=instruction.client_id,
            adapter={k: v for k, v in get_adapter(self.model).items() if k in params},
            num_examples=data.num_examples,
            metrics={
                "loss": loss_sum / max(token_count, 1),
                "steps": instruction.steps,
                "examples": len(picked),
                "tokens": sum(lengths[i] for i in picked),
                "seconds": time.perf_counter() - started,
                "seconds_compute": compute_seconds,  # forward/backward/step only: no adapter swaps
                **self.objective.round_metrics(),
                **dp_metrics,
                **quality_metrics,
                # lifelong tasks: the examples this round could draw from (current task + replay buffer)
                **({"task_pool": len(pool)} if data.stream is not None else {}),
            },
        )
        for hook in hooks:
            hook.on_round_end(params, update)
        return update

    def _backward_step(self, data: LocalData, step_idx: list[int], rng, params, hooks) -> tuple[float, int]:
        """Accumulate the gradient of one optimizer step (all its micro-batches): the objective's
        mean over the whole step (tokens for SFT, pairs for DPO), plus the hooks' extra loss once.
        Returns (summed loss, step weight)."""
        tokens, objective = data.tokens, self.objective
        weight = objective.step_weight(tokens, step_idx)
        loss_sum = 0.0
        for b, idx in enumerate(length_grouped_batches(step_idx, objective.lengths(tokens), self.cfg.batch_size,
                                                       rng, group=1)):
            with self.precision.autocast():
                loss, _ = objective.loss(self.model, tokens, idx, self.pad_id)
            loss_sum += float(loss.detach())
            total = loss / max(weight, 1)
            if b == 0:
                for hook in hooks:
                    extra = hook.extra_loss(params)
                    if extra is not None:
                        total = total + extra
            self.scaler.scale(total).backward()
        return loss_sum, weight

    # ------------------------------------------------------------------ DP-SGD

    def _begin_dp(self, instruction: ClientInstruction, data: LocalData, hooks) -> "DPSGDRound | None":
        """This round's DP-SGD (hooks on the LoRA layers), or None without sample-level DP."""
        if self.privacy is None:
            return None
        if any(h.wants_initial_gradient for h in hooks):
            raise ValueError("privacy.sample_level: a hook asks for a non-private initial gradient")
        self.dp_noise = torch.Generator().manual_seed(
            round_rng(self.seed, instruction.round, instruction.client_id, "dp-sgd").getrandbits(63))
        return self.privacy.begin(self.model, data.num_examples, instruction.client_id, self.store)

    def _dp_backward_step(self, data: LocalData, step_idx: list[int], rng, params, hooks,
                          dp: "DPSGDRound") -> tuple[float, int]:
        """DP-SGD's gradient of one step: every example's gradient clipped and summed micro-batch
        by micro-batch, noise added, divided by the expected batch; the hooks' data-independent
        extra loss (FedProx) added to it. Returns (summed loss, step weight)."""
        tokens, objective = data.tokens, self.objective
        loss_sum = 0.0
        for idx in length_grouped_batches(step_idx, objective.lengths(tokens), self.cfg.batch_size, rng, group=1):
            with self.precision.autocast():
                loss, _ = objective.loss(self.model, tokens, idx, self.pad_id)  # a sum over its examples
            loss_sum += float(loss.detach())
            loss.backward()
            dp.accumulate(params, objective.rows_per_example)
        extras = [e for e in (h.extra_loss(params) for h in hooks) if e is not None]
        if extras:
            sum(extras).backward()
        dp.finish_step(params, self.dp_noise)
        return loss_sum, objective.step_weight(tokens, step_idx)

    # ------------------------------------------------- optional persistent AdamW state

    def _load_optimizer(self, optimizer, params, client_id):
        saved = self.store.get(client_id, OPTIMIZER_STATE)
        if saved is None:
            return
        for key, p in params.items():
            optimizer.state[p] = {  # the moments beside their parameter, the step count on the CPU (AdamW's)
                "step": saved[f"step/{key}"].clone(),
                "exp_avg": saved[f"exp_avg/{key}"].to(p.device),
                "exp_avg_sq": saved[f"exp_avg_sq/{key}"].to(p.device),
            }

    def _save_optimizer(self, optimizer, params, client_id):
        flat = {}
        for key, p in params.items():
            st = optimizer.state.get(p)
            if st:
                for name in ("step", "exp_avg", "exp_avg_sq"):
                    flat[f"{name}/{key}"] = torch.as_tensor(st[name]).detach().to("cpu", copy=True)
        self.store.put(client_id, OPTIMIZER_STATE, flat)
