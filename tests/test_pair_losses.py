"""The pair losses (DPO, IPO, OSP, DRIFT) and Nash-MD's policy-gradient loss: hand-computed values and the
direction a gradient step moves the log-probs."""

import math

import pytest
import torch

from selfplay.learner.algorithms.dpo import dpo_loss
from selfplay.learner.algorithms.drift import drift_loss
from selfplay.learner.algorithms.ipo import ipo_hard_loss, ipo_loss
from selfplay.learner.algorithms.nash_md import nash_md_loss
from selfplay.learner.algorithms.osp import judge_loss, osp_loss, ranked_pairs
from selfplay.preference.self_judge import self_judge_strength


def softplus(x: float) -> float:  # -log sigma(-x)
    return math.log1p(math.exp(x))


def _step(loss_of_h, lr=0.1):
    """Log-probs of (chosen, rejected) after one gradient step from 0 with the reference at 0."""
    logps = torch.zeros(2, requires_grad=True)
    h = (logps[0:1] - 0.0) - (logps[1:2] - 0.0)
    loss, _ = loss_of_h(h, logps)
    loss.backward()
    return (logps - lr * logps.grad).detach()


# --- DPO ---

def test_dpo_hand_computed():
    loss, terms = dpo_loss(torch.tensor([1.0, -2.0]), beta=0.5)
    # -log sigma(0.5) = log(1 + e^-0.5), -log sigma(-1) = log(1 + e^1)
    assert loss.item() == pytest.approx((softplus(-0.5) + softplus(1.0)) / 2)
    assert terms["accuracy"] == 0.5 and terms["margin_mean"] == pytest.approx(-0.5)


def test_dpo_soft_label_hand_computed():
    loss, _ = dpo_loss(torch.tensor([2.0]), beta=1.0, p=torch.tensor([0.75]))
    # 0.75 log(1 + e^-2) + 0.25 log(1 + e^2) = 0.75 * 0.126928 + 0.25 * 2.126928
    assert loss.item() == pytest.approx(0.626928, abs=1e-6)
    assert dpo_loss(torch.tensor([2.0]), 1.0, p=1.0)[0].item() == pytest.approx(softplus(-2.0))


def test_dpo_step_raises_chosen_lowers_rejected():
    after = _step(lambda h, _: dpo_loss(h, beta=0.1))
    assert after[0] > 0 > after[1]


# --- IPO ---

def test_ipo_soft_hand_computed():
    # targets (p - 1/2)/tau = 0.25/0.5 = 0.5 and 0; ((0 - 0.5)^2 + (1 - 0)^2) / 2 = 0.625
    loss, terms = ipo_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.75, 0.5]), tau=0.5)
    assert loss.item() == pytest.approx(0.625)
    assert terms["target_mean"] == pytest.approx(0.25)


def test_ipo_hard_hand_computed():
    loss, _ = ipo_hard_loss(torch.tensor([1.0]), tau=0.25)  # (1 - 1/(2 * 0.25))^2 = (1 - 2)^2
    assert loss.item() == pytest.approx(1.0)


def test_ipo_hard_label_drawn_with_probability_p_equals_soft_in_expectation():
    h, p, tau = torch.tensor([0.3]), 0.8, 0.2
    expected_hard = p * ipo_hard_loss(h, tau)[0] + (1 - p) * ipo_hard_loss(-h, tau)[0]
    # they differ by the label's variance p (1 - p) / tau^2, which has no gradient
    soft = ipo_loss(h, torch.tensor([p]), tau)[0].item()
    assert expected_hard.item() == pytest.approx(soft + p * (1 - p) / tau ** 2)


def test_ipo_step_moves_margin_toward_target():
    after = _step(lambda h, _: ipo_loss(h, torch.tensor([0.9]), tau=0.1))
    assert after[0] > 0 > after[1]
    # past the target (h = 10 > 0.4 / 0.1 = 4) the margin is pulled back: IPO does not push h to infinity
    h = torch.tensor([10.0], requires_grad=True)
    ipo_loss(h, torch.tensor([0.9]), tau=0.1)[0].backward()
    assert h.grad.item() > 0


# --- OSP ---

def test_osp_hand_computed():
    loss, terms = osp_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.75, 1.0]), beta=1.0)
    assert loss.item() == pytest.approx((0.626928 + math.log(2)) / 2, abs=1e-6)
    assert terms["strength_mean"] == pytest.approx(0.875)


def test_osp_step_raises_winner():
    after = _step(lambda h, _: osp_loss(h, torch.tensor([0.8]), beta=0.1))
    assert after[0] > 0 > after[1]


def test_judge_loss_hand_computed_and_its_gradient_follows_the_label():
    logp_a, logp_b = torch.log(torch.tensor([0.5, 0.2])), torch.log(torch.tensor([0.25, 0.6]))
    loss, terms = judge_loss(logp_a, logp_b, torch.tensor([1.0, 0.25]))
    # -(1 * log 0.5) and -(0.25 log 0.2 + 0.75 log 0.6), averaged
    expected = (-math.log(0.5) - (0.25 * math.log(0.2) + 0.75 * math.log(0.6))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert terms["judge_accuracy"] == 1.0
    a = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    judge_loss(a, b, torch.tensor([0.9]))[0].backward()
    assert a.grad.item() < 0 and b.grad.item() < 0 and a.grad.item() < b.grad.item()  # "A" rises most


def test_ranked_pairs_k5_and_k4():
    # K = 5: sorted best..worst = 1 (0.9), 4 (0.7), 2 (0.5), 0 (0.2), 3 (0.1); the median (2) is left out
    assert ranked_pairs([0.2, 0.9, 0.5, 0.1, 0.7]) == [(1, 3), (4, 0)]
    # K = 4: sorted 2 (4), 0 (3), 3 (2), 1 (1)
    assert ranked_pairs([3.0, 1.0, 4.0, 2.0]) == [(2, 1), (0, 3)]
    assert ranked_pairs([1.0, 1.0]) == [(0, 1)]  # ties keep the original order
    assert ranked_pairs([5.0]) == []


def test_self_judge_strength_averages_both_orders():
    # P("A") = 0.8 with (a, b); P("A") = 0.4 with (b, a), so a wins that order with 0.6: (0.8 + 0.6) / 2
    assert self_judge_strength(0.8, 0.4) == pytest.approx(0.7)
    # a judge that favours position A by +0.2 on an even pair: the bias cancels
    assert self_judge_strength(0.7, 0.7) == pytest.approx(0.5)
    assert torch.allclose(self_judge_strength(torch.tensor([0.9, 0.2]), torch.tensor([0.3, 0.6])),
                          torch.tensor([0.8, 0.3]))


# --- DRIFT ---

def test_drift_hand_computed():
    # -log sigma(0) + 0.5 * 2 = log 2 + 1
    loss, terms = drift_loss(torch.tensor([0.0]), torch.tensor([-2.0]), beta=0.1, alpha=0.5)
    assert loss.item() == pytest.approx(math.log(2) + 1.0)
    assert terms["chosen_nll"] == pytest.approx(2.0) and terms["dpo_loss"] == pytest.approx(math.log(2))


def test_drift_step_raises_chosen_lowers_rejected():
    after = _step(lambda h, logps: drift_loss(h, logps[0:1] / 5, beta=0.1, alpha=0.001))
    assert after[0] > 0 > after[1]
    # the NLL term alone still raises the chosen response when the preference term is saturated
    logps = torch.tensor([0.0], requires_grad=True)
    drift_loss(torch.tensor([1000.0]), logps, beta=0.1, alpha=0.001)[0].backward()
    assert logps.grad.item() == pytest.approx(-0.001)


# --- Nash-MD ---

def test_nash_md_hand_computed():
    policy, ref = torch.tensor([-1.0, -2.0], requires_grad=True), torch.tensor([-1.5, -2.0])
    # coefficients: 0.1 * 0.5 - (0.8 - 0.5) = -0.25 and 0.1 * 0 - (0.3 - 0.5) = 0.2
    loss, terms = nash_md_loss(policy, ref, torch.tensor([0.8, 0.3]), tau=0.1)
    assert loss.item() == pytest.approx((-0.25 * -1.0 + 0.2 * -2.0) / 2)
    loss.backward()
    assert torch.allclose(policy.grad, torch.tensor([-0.125, 0.1]))  # the coefficients / batch size
    assert terms["logratio_mean"] == pytest.approx(0.25)


def test_nash_md_step_raises_a_winner_at_the_reference():
    logits = torch.zeros(3, requires_grad=True)  # tabular policy over 3 responses, at the reference
    logps = torch.log_softmax(logits, 0)
    loss, _ = nash_md_loss(logps[0:1], logps[0:1].detach(), torch.tensor([0.9]), tau=0.1)  # y = 0 won
    loss.backward()
    after = torch.softmax(logits - 1.0 * logits.grad, 0)
    assert after[0] > 1 / 3 > after[1]


def test_nash_md_kl_term_is_the_exact_kl_gradient_and_trls_token_form_is_not():
    # two-token responses over vocab 3, enumerated: the expected gradient of the sequence-level surrogate
    # equals tau * grad KL(pi || mu); TRL's per-token form keeps only same-token log-ratios and differs
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(3, generator=g, requires_grad=True), torch.randn(3, 3, generator=g, requires_grad=True)
    ref_first, ref_second = torch.randn(3, generator=g), torch.randn(3, 3, generator=g)
    y1, y2 = torch.cartesian_prod(torch.arange(3), torch.arange(3)).T
    step1 = torch.log_softmax(first, 0)[y1]
    step2 = torch.log_softmax(second, 1)[y1, y2]
    ref1, ref2 = torch.log_softmax(ref_first, 0)[y1], torch.log_softmax(ref_second, 1)[y1, y2]
    logp, ref_logp = step1 + step2, ref1 + ref2
    prob = logp.exp().detach()
    tau, params = 0.1, [first, second]

    exact = torch.autograd.grad(tau * (logp.exp() * (logp - ref_logp)).sum(), params, retain_graph=True)
    ours = torch.autograd.grad(sum(prob[k] * nash_md_loss(logp[k:k + 1], ref_logp[k:k + 1],
                                                          torch.tensor([0.5]), tau)[0] for k in range(9)), params,
                               retain_graph=True)
    trl = torch.autograd.grad(tau * (prob * ((step1 - ref1).detach() * step1 + (step2 - ref2).detach() * step2)).sum(),
                              params)
    for e, o, t in zip(exact, ours, trl):
        assert torch.allclose(o, e, atol=1e-6)
    assert torch.allclose(trl[1], exact[1], atol=1e-6)  # the last token's gradient agrees...
    assert (trl[0] - exact[0]).norm() > 0.05 * exact[0].norm()  # ...the first token's misses the second's log-ratio
