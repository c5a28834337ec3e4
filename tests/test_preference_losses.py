"""DPO against TRL's DPOTrainer (the oracle) on a real tiny model; β-DPO and Dr. DPO by hand."""

import math
import tempfile

import pytest
import torch
import torch.nn.functional as F

from fedtune.client.objectives.beta_dpo import BetaDPOState, beta_dpo_loss
from fedtune.client.objectives.dpo import dpo_loss
from fedtune.client.objectives.dr_dpo import dr_dpo_loss
from fedtune.client.objectives.preference import preference_metrics
from fedtune.models.adapters import ADAPTERS, attach_adapter
from fedtune.models.adapters.state import get_adapter, set_adapter
from fedtune.models.logprobs import response_logps


def test_dpo_loss_rewards_and_gradients_match_trl(tiny):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok = tiny.tokenizer
    model = attach_adapter(tiny.model, ADAPTERS.config("lora", r=4, alpha=8))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    reference = get_adapter(model)
    rows = [{"prompt": [{"role": "user", "content": f"question {i}"}],
             "chosen": [{"role": "assistant", "content": f"right {i}"}],
             "rejected": [{"role": "assistant", "content": f"wrong answer {i}"}]} for i in range(4)]
    args = DPOConfig(output_dir=tempfile.mkdtemp(), beta=0.1, report_to=[], use_cpu=True, max_length=64)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    # TRL keeps a copy of the starting adapter as its reference; move the policy away from it.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and ".default." in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    policy = get_adapter(model)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.train()
    trl_loss = trainer._compute_loss(model, batch, return_outputs=False)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    ours = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)}
    model.eval()  # no dropout: both sides see the same function
    with torch.no_grad():
        set_adapter(model, reference)
        ref = response_logps(model, ours)
    set_adapter(model, policy)
    pol = response_logps(model, ours)
    losses, chosen_r, rejected_r = dpo_loss(pol[:4], pol[4:], ref[:4], ref[4:], beta=0.1)
    losses.mean().backward()

    torch.testing.assert_close(losses.mean().detach(), trl_loss.detach(), rtol=1e-5, atol=1e-6)
    assert abs(float(chosen_r.mean()) - metrics["rewards/chosen"]) < 1e-5
    assert abs(float(rejected_r.mean()) - metrics["rewards/rejected"]) < 1e-5
    assert preference_metrics(chosen_r, rejected_r)["reward_accuracy"] == pytest.approx(metrics["rewards/accuracies"])
    assert abs(float(chosen_r.mean() - rejected_r.mean())) > 1e-4  # policy != reference: a real test
    for name, p in model.named_parameters():
        if name in trl_grads:
            torch.testing.assert_close(p.grad, trl_grads[name], rtol=1e-4, atol=1e-6)


def test_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.5))
    m = (pc - rc) - (pr - rr)  # 1.5
    losses, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.2)
    expected = -0.8 * F.logsigmoid(0.5 * m) - 0.2 * F.logsigmoid(-0.5 * m)
    torch.testing.assert_close(losses, expected)


def _pairs(margins):
    m = torch.tensor(margins, dtype=torch.float64)
    zeros = torch.zeros_like(m)
    return m, zeros, zeros, zeros  # policy_chosen - ref_chosen = m, everything else 0


def test_beta_dpo_ema_filtering_and_dynamic_beta_by_hand():
    state = BetaDPOState()
    gen = torch.Generator().manual_seed(0)
    m1 = [1.0, 2.0, 3.0, 4.0, 10.0]
    loss, _, _, info = beta_dpo_loss(*_pairs(m1), beta0=0.1, state=state, generator=gen, rho=0.2, a=0.6, gamma=0.9)
    mean1, std1 = sum(m1) / 5, torch.tensor(m1).std().item()
    assert state.gap_mean == pytest.approx(0.1 * mean1)
    assert state.gap_std == pytest.approx(0.1 * std1)
    assert info["pairs_kept"] == 4  # int(5 * 0.8)
    # The outlier (10) is furthest from the running mean: lowest Gaussian weight, so with this
    # generator it is the one dropped; check β and the loss from the kept set by hand.
    gen2 = torch.Generator().manual_seed(0)
    w = torch.exp(-0.5 * ((torch.tensor(m1, dtype=torch.float64) - state.gap_mean) / state.gap_std) ** 2)
    kept = torch.multinomial(w.float(), 4, replacement=False, generator=gen2)
    kept_m = torch.tensor(m1, dtype=torch.float64)[kept]
    beta = 0.1 * (1 + 0.6 * (float(kept_m.mean()) - state.gap_mean))
    assert info["beta_used"] == pytest.approx(beta)
    assert float(loss) == pytest.approx(float((-F.logsigmoid(beta * kept_m)).mean()))
    m2 = [0.0, 1.0]
    beta_dpo_loss(*_pairs(m2), beta0=0.1, state=state, generator=gen, rho=0.2, a=0.6, gamma=0.9)
    assert state.gap_mean == pytest.approx(0.9 * 0.1 * mean1 + 0.1 * 0.5)
    assert state.gap_std == pytest.approx(0.9 * 0.1 * std1 + 0.1 * torch.tensor(m2).std().item())


def test_beta_dpo_sampling_survives_margins_far_from_the_running_mean():
    """|M - M0|/σ ≈ 30: every Gaussian weight is ~1e-200, zero once cast to float32 (multinomial
    refused it). Shifted weights keep the distribution: the two nearest pairs are kept."""
    m = [1.00, 1.01, 1.02, 1.50]
    for seed in range(5):
        state = BetaDPOState(gap_mean=0.0, gap_std=0.01)
        _, _, _, info = beta_dpo_loss(*_pairs(m), beta0=0.1, state=state, generator=torch.Generator().manual_seed(seed),
                                      rho=0.5, a=0.6, gamma=0.9)
        assert state.gap_std == pytest.approx(0.9 * 0.01 + 0.1 * torch.tensor(m).std().item())
        assert info["pairs_kept"] == 2
        assert info["beta_used"] == pytest.approx(0.1 * (1 + 0.6 * (1.005 - state.gap_mean)))


def test_beta_dpo_reduces_to_dpo_and_state_round_trips():
    m = [0.5, -1.0, 2.0, 0.1]
    gen = torch.Generator().manual_seed(1)
    state = BetaDPOState()
    loss, _, _, info = beta_dpo_loss(*_pairs(m), beta0=0.1, state=state, generator=gen, rho=0.0, a=0.0)
    ref, _, _ = dpo_loss(*_pairs(m), beta=0.1)
    assert float(loss) == pytest.approx(float(ref.mean()))
    assert info["beta_used"] == 0.1 and info["pairs_kept"] == 4
    restored = BetaDPOState()
    restored.load_state_dict(state.state_dict())
    assert restored == state


def test_dr_dpo_by_hand_and_limits():
    losses = torch.tensor([0.2, 0.7, 3.0], dtype=torch.float64, requires_grad=True)
    got = dr_dpo_loss(losses, beta_prime=1.0)
    expected = -math.log((math.exp(-0.2) + math.exp(-0.7) + math.exp(-3.0)) / 3)
    assert float(got) == pytest.approx(expected)
    got.backward()
    w = torch.exp(-losses.detach())
    torch.testing.assert_close(losses.grad, w / w.sum())  # gradient weight ∝ exp(−ℓ_i/β′)
    assert float(dr_dpo_loss(losses.detach(), 1e6)) == pytest.approx(float(losses.detach().mean()), rel=1e-5)
    assert float(dr_dpo_loss(losses.detach(), 1e-3)) == pytest.approx(0.2 + 1e-3 * math.log(3), rel=1e-3)
