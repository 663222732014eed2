"""GRPO maths: hand-computed advantages, and the loss against trl's formula on the same tensors."""

import pytest
import torch

from xomni.rl.grpo import forward_kl, grpo_loss, group_advantages, k3, weight_negative


def test_advantages_by_hand():
    adv, flat = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]))
    torch.testing.assert_close(adv[0], torch.tensor([-1.16181, -0.38727, 0.38727, 1.16181]), rtol=0, atol=1e-5)
    assert flat.tolist() == [False, True] and adv[1].abs().sum() == 0
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="rollouts"):
        group_advantages(torch.tensor([[1.0]]))


def test_negative_advantages_weighted_by_hand():
    adv, _ = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    torch.testing.assert_close(weight_negative(adv, 0.5)[0], torch.tensor([-0.580905, -0.193635, 0.38727, 1.16181]),
                               rtol=0, atol=1e-5)
    assert torch.equal(weight_negative(adv, 1.0), adv)  # GRPO as written
    assert weight_negative(adv, 0.0).min() == 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            weight_negative(adv, bad)


def _trl_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, completion_mask, beta,
              epsilon_low, epsilon_high, loss_type):
    """trl's GRPOTrainer._compute_loss (token-level importance sampling), transcribed."""
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss1 = coef_1 * advantages.unsqueeze(1)
    per_token_loss2 = coef_2 * advantages.unsqueeze(1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    if beta != 0.0:
        per_token_kl = torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * completion_mask).sum(-1) / completion_mask.sum(-1).clamp(min=1.0)).mean()
    return (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0)  # bnpo


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_loss_equals_trl_on_equal_length_rollouts(loss_type):
    g = torch.Generator().manual_seed(0)
    B, T = 8, 16
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + 0.3 * torch.randn(B, T, generator=g)
    ref = logp + 0.2 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.ones(B, T)
    ours, stats = grpo_loss(logp, old, ref, adv, mask, eps_low=0.2, eps_high=0.28, beta=0.01)
    theirs = _trl_loss(logp, old, ref, adv, mask, 0.01, 0.2, 0.28, loss_type)
    torch.testing.assert_close(ours, theirs)
    assert 0 < stats["clip_fraction"] < 1 and stats["kl"] > 0


def test_gradient_pushes_up_positive_advantage_tokens_and_kl_is_zero_at_the_reference():
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    loss, stats = grpo_loss(logp, logp.detach(), logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    loss.backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()  # descent raises row 0, lowers row 1
    assert stats["kl"] == 0 and stats["ratio"] == 1
    assert float(k3(torch.tensor(-1.0), torch.tensor(-2.0))) > 0


def test_forward_kl_is_the_expected_gradient_of_the_k3_term():
    """The k3 term's gradient at a sampled token, averaged over the policy's distribution (enumerated, not sampled),
    equals the gradient of `forward_kl`; both are 0 at the reference."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, generator=g, requires_grad=True)
    ref = torch.randn(5, generator=g).log_softmax(-1)
    logp = z.log_softmax(-1)
    pi = logp.exp().detach()
    expected = sum(pi[x] * torch.autograd.grad(k3(logp[x], ref[x]), z, retain_graph=True)[0] for x in range(5))
    (exact,) = torch.autograd.grad(forward_kl(logp[None, None], ref[None, None]).sum(), z)
    torch.testing.assert_close(exact, expected)
    assert float(forward_kl(ref[None, None], ref[None, None])) == pytest.approx(0, abs=1e-7)
    by_hand = float((ref.exp() * (ref - logp.detach())).sum())
    assert float(forward_kl(logp[None, None].detach(), ref[None, None])) == pytest.approx(by_hand) and by_hand > 0


def test_a_given_kl_replaces_k3_in_the_loss():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(4, 6, generator=g)
    ref = logp + 0.3 * torch.randn(4, 6, generator=g)
    adv, mask = torch.randn(4, generator=g), torch.ones(4, 6)
    kl = torch.rand(4, 6, generator=g)
    without, _ = grpo_loss(logp, logp, ref, adv, mask, beta=0.0)
    loss, stats = grpo_loss(logp, logp, ref, adv, mask, beta=0.5, kl_per_token=kl)
    torch.testing.assert_close(loss, without + 0.5 * kl.mean())
    assert stats["kl_full"] == pytest.approx(float(kl.mean()))
    assert stats["kl"] == pytest.approx(float(k3(logp, ref).mean()))


def test_pg_mask_leaves_out_the_policy_gradient_term_and_keeps_the_kl_everywhere():
    logp = torch.zeros(2, 3, requires_grad=True)  # ratio 1: each token's policy-gradient term is -A
    adv, kl = torch.tensor([1.0, -1.0]), torch.full((2, 3), 0.2)
    pg_mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), adv, torch.ones(2, 3), beta=0.5, kl_per_token=kl,
                        pg_mask=pg_mask)
    assert loss.item() == pytest.approx((-1 - 1 + 1 + 0.5 * 0.2 * 6) / 6)  # -A on 3 tokens, the KL on all 6
    loss.backward()
    assert torch.equal(logp.grad == 0, ~pg_mask)  # no gradient through a masked token's ratio
