"""Differential privacy: DP-FedAvg's clipping, noise and adaptive clipping against Flower's
implementation and Andrew et al.'s rule, ε against Google's dp-accounting, and real runs that
resume exactly and stop at the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import interrupt_in_round, metrics_rows, run_config
from safetensors.torch import load_file

from fedtune.config import ConfigError, load_config
from fedtune.engine.runner import run_experiment
from fedtune.privacy.accountant import calibrate, epsilon
from fedtune.privacy.client_level import ClientLevelPrivacy, update_noise_multiplier
from fedtune.privacy.config import ClientLevelDP
from fedtune.protocol import ClientUpdate


def _deltas(norms: list[float], size: int = 6, seed: int = 0) -> list[dict]:
    """Deltas of two tensors with the given global L2 norms."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in norms:
        d = {"a": torch.randn(size, generator=g, dtype=torch.float64), "b": torch.randn(2, 3, generator=g, dtype=torch.float64)}
        total = math.sqrt(sum(float((t * t).sum()) for t in d.values()))
        out.append({k: t * (n / total) for k, t in d.items()})
    return out


def _updates(n: int) -> list[ClientUpdate]:
    return [ClientUpdate(client_id=i, adapter={}, num_examples=1) for i in range(n)]


def test_clipped_mean_and_noise_scale_match_flowers_dp_fedavg():
    from flwr.supercore.differential_privacy import clip_inputs_inplace, compute_stdv

    deltas = _deltas([0.5, 3.0, 10.0])
    dp = ClientLevelDP(clip_norm=2.0, noise_multiplier=0.0)
    ours = ClientLevelPrivacy(dp, q=1.0, rounds=1).clip(deltas, _updates(3))
    for mine, d in zip(ours, deltas):
        theirs = [d["a"].numpy().copy(), d["b"].numpy().copy()]
        clip_inputs_inplace(theirs, 2.0)
        np.testing.assert_allclose(mine["a"].numpy(), theirs[0], rtol=1e-12)
        np.testing.assert_allclose(mine["b"].numpy(), theirs[1], rtol=1e-12)
    # noise on the mean: std z·C/m, drawn per (seed, round) so a resumed run draws the same
    noisy = ClientLevelPrivacy(ClientLevelDP(clip_norm=2.0, noise_multiplier=1.5), q=1.0, rounds=1)
    zero = {"w": torch.zeros(200_000, dtype=torch.float64)}
    sample = noisy.privatize(zero, 4, round=3)["w"]
    assert float(sample.std()) == pytest.approx(compute_stdv(1.5, 2.0, 4), rel=0.01)
    assert torch.equal(sample, noisy.privatize(zero, 4, round=3)["w"])
    assert not torch.equal(sample, noisy.privatize(zero, 4, round=4)["w"])


def test_adaptive_clipping_moves_towards_the_target_quantile_and_flowers_moves_away():
    """Every update has norm 2 and C starts at 1: all are clipped, so C must grow towards 2
    (Andrew et al.: b_i = 1 when *unclipped*). Flower 1.41 counts b_i = 1 when clipped with
    the same sign, so its C shrinks away from the updates."""
    from flwr.serverapp.strategy import (
        DifferentialPrivacyServerSideAdaptiveClipping,
        FedAvg,
    )
    from flwr.supercore.differential_privacy import adaptive_clip_inputs_inplace

    dp = ClientLevelDP(clipping="adaptive", clip_norm=1.0, noise_multiplier=0.0, clip_lr=0.2, target_quantile=0.5)
    ours = ClientLevelPrivacy(dp, q=1.0, rounds=1)
    flower = DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(), noise_multiplier=0.0, num_sampled_clients=5,
                                                           initial_clipping_norm=1.0, target_clipped_quantile=0.5,
                                                           clip_norm_lr=0.2)
    ours_path, flower_path = [], []
    for r in range(30):
        deltas = _deltas([2.0] * 5, seed=r)
        ours.privatize(ours.clip(deltas, _updates(5))[0], 5, r)
        ours_path.append(ours.clip_norm)
        bits = [adaptive_clip_inputs_inplace([d["a"].numpy().copy(), d["b"].numpy().copy()], flower.clipping_norm)
                for d in deltas]
        flower._geometric_update(sum(bits) / 5)
        flower_path.append(flower.clipping_norm)
    assert ours_path[0] == pytest.approx(math.exp(0.2 * 0.5))  # all clipped: b = 0, C·exp(-η(0 - γ))
    assert 1.8 < ours_path[-1] < 2.25  # settles around the median norm (2), up and down
    assert all(b < a for a, b in zip([1.0, *flower_path], flower_path)) and flower_path[-1] < 0.1


def test_adaptive_noise_split_matches_flower():
    from flwr.supercore.differential_privacy import compute_adaptive_noise_params

    dp = ClientLevelDP(clipping="adaptive", noise_multiplier=0.4, clipped_count_stddev=1.0)
    _, theirs = compute_adaptive_noise_params(0.4, 10, 1.0)
    assert update_noise_multiplier(dp, 0.4, 10) == pytest.approx(theirs, rel=1e-12)
    with pytest.raises(ConfigError, match="clipped_count_stddev"):
        update_noise_multiplier(ClientLevelDP(clipping="adaptive", noise_multiplier=1.0), 1.0, 10)  # σ_b = 0.5


@pytest.mark.parametrize("q,z,steps", [(1.0, 1.0, 3), (1.0, 4.0, 50), (0.01, 0.8, 1000), (0.2, 2.0, 100)])
def test_epsilon_matches_google_dp_accounting(q, z, steps):
    import dp_accounting
    from opacus.accountants import RDPAccountant

    acc = dp_accounting.rdp.RdpAccountant(orders=RDPAccountant.DEFAULT_ALPHAS)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    assert epsilon(z, q, steps, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=2e-3)


def test_calibrated_noise_reaches_the_target_epsilon_and_no_less():
    z = calibrate(4.0, 1e-5, 1.0, 3)
    assert 3.9 < epsilon(z, 1.0, 3, 1e-5) <= 4.0
    assert epsilon(z * 0.95, 1.0, 3, 1e-5) > 4.0
    assert epsilon(0.0, 1.0, 1, 1e-5) == math.inf and epsilon(1.0, 1.0, 0, 1e-5) == 0.0


# ------------------------------------------------------------------------------ real runs

def _config(tmp_path, out, **extra):
    return run_config(tmp_path, out, **{"federation.rounds": 3, "eval.every": 0, **extra})


ADAPTIVE = {"clipping": "adaptive", "clip_norm": 0.05, "noise_multiplier": 0.5, "clipped_count_stddev": 1.0,
            "side": "client"}


def test_client_level_dp_run_accounts_every_round_and_resumes_bit_identical(tmp_path, loaded):
    whole = _config(tmp_path, "whole", **{"privacy.client_level": ADAPTIVE})
    summary = run_experiment(whole, loaded=loaded, progress=False)
    rows = metrics_rows(whole)
    eps = [r["privacy"]["client_level"]["epsilon"] for r in rows]
    assert eps == pytest.approx([epsilon(0.5, 1.0, n, 1e-5) for n in (1, 2, 3)])
    assert summary["privacy"]["client_level"]["epsilon"] == eps[-1]
    report = (whole.run_dir() / "report.html").read_text()
    assert 'alt="privacy spent"' in report and "ε (client level)" in report
    for r in rows:  # clients clipped their own deltas to the norm the server sent and said so
        dp = r["aggregation"]["privacy"]
        assert all(t["dp_unclipped"] == (t["dp_update_norm"] <= dp["clip_norm"]) for t in r["train"].values())
    norms = [r["aggregation"]["privacy"]["clip_norm"] for r in rows]
    assert norms[0] == 0.05 and norms[1] != norms[0]  # adaptive C moved, and its state is checkpointed:
    cut = _config(tmp_path, "cut", **{"privacy.client_level": ADAPTIVE})
    interrupt_in_round(cut, loaded, stop_round=2)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    assert [r["aggregation"]["privacy"]["clip_norm"] for r in metrics_rows(cut)] == norms
    a = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_stops_before_the_round_that_would_exceed_max_epsilon(tmp_path, loaded):
    dp = {"clip_norm": 0.05, "noise_multiplier": 1.0, "max_epsilon": 8.0}  # ε: 4.73, 7.08, 9.01, ...
    cfg = _config(tmp_path, "budget", **{"privacy.client_level": dp, "federation.rounds": 5,
                                         "output.checkpoint_every": 5})
    summary = run_experiment(cfg, loaded=loaded, progress=False)
    rows = metrics_rows(cfg)
    assert [r["round"] for r in rows] == [0, 1] and "eval" in rows[-1]  # the budget's last round is evaluated
    assert "round 2 would bring ε to 9.01 > max_epsilon 8" in summary["stopped"]
    assert (cfg.run_dir() / "checkpoints" / "LATEST").exists()
    again = run_experiment(cfg, resume=True, loaded=loaded, progress=False)  # resuming spends nothing more
    assert [r["round"] for r in metrics_rows(cfg)] == [0, 1] and again["stopped"] == summary["stopped"]


@pytest.mark.parametrize("overrides,message", [
    (["privacy.client_level={clip_norm: 1}"], "give exactly one of noise_multiplier or target_epsilon"),
    (["privacy.client_level={noise_multiplier: 1}", "aggregation.reducer={name: median, f: 1}", "federation.num_clients=6"], "needs aggregation.reducer: mean"),
    (["privacy.client_level={noise_multiplier: 1}", "algorithm=scaffold"], "send tensors besides the adapter"),
    (["privacy.client_level={noise_multiplier: 1}", "algorithm=local"], "no aggregation step"),
])
def test_client_level_dp_refuses_what_its_noise_does_not_cover(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


# ------------------------------------------------------------------------- DP-SGD (sample level)

def _per_example_clipped_sum(trainer, tokens, idx, params, clip_norm):
    """The oracle: each example's gradient by its own backward pass, clipped, summed."""
    total = {k: torch.zeros(p.shape, dtype=torch.float64) for k, p in params.items()}
    norms = []
    for i in idx:
        loss, _ = trainer.objective.loss(trainer.model, tokens, [i], trainer.pad_id)
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
        norms.append(norm)
        for k, g in grads.items():
            total[k] += min(1.0, clip_norm / norm) * g.double()
    return total, norms


@pytest.mark.parametrize("objective, adapter", [("sft", "lora"), ("dpo", "lora"), ("sft", "prompt"), ("sft", "p-tuning"),
                                                ("sft", "prefix")])
def test_dp_sgd_clips_every_example_gradient_as_its_own_backward_pass_would(tmp_path, loaded, objective, adapter):
    """Opacus' per-row gradients of one batched backward, grouped into examples (a DPO pair is
    its chosen and rejected rows) and clipped, equal clipping each example's own gradient — for
    LoRA and for the soft prompts (the prompt encoder's embedding rows, expanded per example)."""
    from fedtune.client.state_store import ClientStateStore
    from fedtune.client.trainer import LocalTrainer
    from fedtune.engine.workspace import build_workspace
    from fedtune.models.adapters.state import adapter_parameters
    from fedtune.privacy.config import SampleLevelDP
    from fedtune.privacy.dp_sgd import SampleLevelPrivacy

    cfg = _config(tmp_path, "ws", **{"train.objective": objective, "model.adapter": {"method": adapter}})
    ws = build_workspace(cfg, loaded)
    store = ClientStateStore(tmp_path / "store")
    trainer = LocalTrainer(ws.model, ws.tokenizer, cfg.train, store, reference=ws.dpo_reference(cfg.train))
    tokens, idx = ws.train_tokens[0], [0, 1, 2, 3]
    params = adapter_parameters(ws.model)
    with torch.no_grad():  # a non-zero LoRA B, so that A's gradients are not zero
        for k, p in params.items():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(k))))
    trainer.objective.begin_round(trainer, tokens, idx)
    ws.model.train()
    _, norms = _per_example_clipped_sum(trainer, tokens, idx, params, 1.0)
    clip_norm = sorted(norms)[1] * 1.01  # some examples clipped, some not
    oracle, _ = _per_example_clipped_sum(trainer, tokens, idx, params, clip_norm)

    settings = SampleLevelPrivacy(SampleLevelDP(clip_norm=clip_norm, noise_multiplier=0.0), rounds=1, steps=1, batch=4)
    dp = settings.begin(ws.model, len(tokens), 0, store)
    for part in ([0, 1], [2, 3]):  # two micro-batches of one step
        loss, _ = trainer.objective.loss(ws.model, tokens, part, trainer.pad_id)
        loss.backward()
        dp.accumulate(params, trainer.objective.rows_per_example)
    assert dp.clipped == 2 and dp.examples == 4
    atol = 1e-7 if adapter == "lora" else 1e-6  # the prompt encoders' small gradients: float32 rounding
    for k in params:
        torch.testing.assert_close(dp.sum[k], oracle[k], rtol=1e-3, atol=atol)
    dp.finish_step(params, torch.Generator().manual_seed(0))
    for k, p in params.items():  # z = 0: the gradient is the clipped sum over the expected batch
        torch.testing.assert_close(p.grad.double(), oracle[k] / 4, rtol=1e-3, atol=atol)
    dp.close()
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in params.values())


def test_poisson_steps_draw_each_example_with_the_sample_rate():
    import random

    from fedtune.privacy.config import SampleLevelDP
    from fedtune.privacy.dp_sgd import SampleLevelPrivacy

    settings = SampleLevelPrivacy(SampleLevelDP(noise_multiplier=1.0), rounds=1, steps=1, batch=8)
    steps = settings.batches(100, 400, random.Random(0))
    sizes = [len(s) for s in steps]
    assert 7.6 < sum(sizes) / len(sizes) < 8.4 and len(set(sizes)) > 5  # mean q·N = 8, sizes vary
    assert steps == settings.batches(100, 400, random.Random(0))


SAMPLE_LEVEL = {"clip_norm": 1.0, "noise_multiplier": 0.8}


def test_dp_sgd_run_changes_the_adapter_accounts_like_opacus_and_resumes_bit_identical(tmp_path, loaded):
    from opacus.accountants import RDPAccountant

    extra = {"privacy.sample_level": SAMPLE_LEVEL, "federation.clients_per_round": 2}
    whole = _config(tmp_path, "whole", **extra)
    summary = run_experiment(whole, loaded=loaded, progress=False)
    rows = metrics_rows(whole)
    adapter = load_file(str(whole.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert max(float(t.abs().max()) for k, t in adapter.items() if "lora_B" in k) > 0  # opacus#820 did not bite
    taken: dict[str, int] = {}
    for r in rows:  # each client's ε is Opacus' RDP accountant over the DP steps it has taken so far
        for c, eps in r["privacy"]["sample_level"]["epsilon"].items():
            taken[c] = taken.get(c, 0) + r["train"][c]["steps"]
            acc = RDPAccountant()
            for _ in range(taken[c]):
                acc.step(noise_multiplier=0.8, sample_rate=r["train"][c]["dp_sample_rate"])
            assert eps == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert summary["privacy"]["sample_level"]["epsilon_max"] == max(summary["privacy"]["sample_level"]["epsilon"].values())
    cut = _config(tmp_path, "cut", **extra)
    interrupt_in_round(cut, loaded, stop_round=2)
    run_experiment(cut, resume=True, loaded=loaded, progress=False)
    assert [r["privacy"] for r in metrics_rows(cut)] == [r["privacy"] for r in rows]
    resumed = load_file(str(cut.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(adapter[k], resumed[k]) for k in adapter)


def test_dp_sgd_refuses_objectives_without_per_example_losses():
    with pytest.raises(ConfigError, match="beta-dpo's loss is not a sum over examples"):
        load_config(None, ["privacy.sample_level={noise_multiplier: 1}", "train.objective=beta-dpo"])


@pytest.mark.parametrize("method", ["dora", "ia3"])
def test_dp_sgd_refuses_adapters_without_per_example_gradients(method):
    with pytest.raises(ConfigError, match=f"no per-example gradients for {method}'s layers"):
        load_config(None, ["privacy.sample_level={noise_multiplier: 1}", f"model.adapter={{method: {method}}}"])


@pytest.mark.parametrize("algorithm", ["fedprox", "fedavgm", "fedadam"])
def test_client_level_dp_wraps_every_aggregating_strategy(tmp_path, loaded, algorithm):
    """The noisy mean is what each server rule consumes: two rounds run, ε is accounted, and the
    adapter moved (the server rules differ, the wrapper does not)."""
    cfg = _config(tmp_path, algorithm, **{"algorithm.name": algorithm, "federation.rounds": 2,
                                          "privacy.client_level": {"clip_norm": 0.05, "noise_multiplier": 0.5}})
    run_experiment(cfg, loaded=loaded, progress=False)
    rows = metrics_rows(cfg)
    assert [r["privacy"]["client_level"]["epsilon"] for r in rows] == pytest.approx(
        [epsilon(0.5, 1.0, n, 1e-5) for n in (1, 2)])
    assert all(r["aggregation"]["privacy"]["noise_std"] == pytest.approx(0.5 * 0.05 / 3) for r in rows)
    adapter = load_file(str(cfg.run_dir() / "adapter" / "adapter_model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in adapter.values())
    assert max(float(t.abs().max()) for k, t in adapter.items() if "lora_B" in k) > 0
