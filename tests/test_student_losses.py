"""The IB objective's pieces and the differentiable channels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sdr_tosc.semantic.channels import apply_channel, mixed_channel
from sdr_tosc.semantic.losses import gaussian_kl, ib_loss, kd_kl


def test_gaussian_kl_matches_closed_form_and_torch():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    got = gaussian_kl(mu, logvar)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4, 6), torch.ones(4, 6))
    torch.testing.assert_close(got, torch.distributions.kl_divergence(q, p).sum(-1))
    # closed form by hand for one element
    m, lv = float(mu[0, 0]), float(logvar[0, 0])
    one = gaussian_kl(mu[:1, :1], logvar[:1, :1])
    assert math.isclose(float(one), 0.5 * (m * m + math.exp(lv) - 1 - lv), rel_tol=1e-5)
    # the mask keeps only the sent dimensions; N(0, 1) itself costs nothing
    mask = torch.tensor([[1, 1, 0, 0, 0, 0]] * 4, dtype=torch.float32)
    torch.testing.assert_close(gaussian_kl(mu, logvar, mask), gaussian_kl(mu[:, :2], logvar[:, :2]))
    assert float(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max()) == 0.0


@pytest.mark.parametrize("topk", [None, 3])
def test_kd_is_zero_when_student_equals_teacher(topk):
    torch.manual_seed(1)
    logits = torch.randn(5, 10)
    t = 4.0
    teacher = F.log_softmax(logits / t, dim=1)
    idx = logits.topk(topk, dim=1).indices if topk else None
    assert float(kd_kl(logits, teacher, t, idx).abs().max()) < 1e-5
    other = torch.randn(5, 10)
    assert float(kd_kl(other, teacher, t, idx).min()) > 0


def test_kd_full_matches_hinton_formula():
    torch.manual_seed(2)
    s, tl, t = torch.randn(3, 10), torch.randn(3, 10), 2.0
    want = F.kl_div(F.log_softmax(s / t, 1), F.log_softmax(tl / t, 1), reduction="none", log_target=True).sum(1) * t * t
    torch.testing.assert_close(kd_kl(s, F.log_softmax(tl / t, 1), t), want)


def test_topk_kd_compares_k_plus_one_bins():
    torch.manual_seed(3)
    s, tl, t, k = torch.randn(2, 10), torch.randn(2, 10), 1.0, 3
    lp, lq = F.log_softmax(tl / t, 1), F.log_softmax(s / t, 1)
    idx = tl.topk(k, 1).indices
    p = torch.cat([lp.exp().gather(1, idx), 1 - lp.exp().gather(1, idx).sum(1, keepdim=True)], 1)
    q = torch.cat([lq.exp().gather(1, idx), 1 - lq.exp().gather(1, idx).sum(1, keepdim=True)], 1)
    want = (p * (p.log() - q.log())).sum(1)
    torch.testing.assert_close(kd_kl(s, lp, t, idx), want, rtol=1e-4, atol=1e-5)
    # the student's spread over the tail does not matter to the top-k-aware KL (only its total does)
    s2 = s.clone()
    tail = torch.ones(2, 10, dtype=torch.bool).scatter_(1, idx, False)
    s2[tail] = s[tail].flip(0)  # shuffle the tail logits between samples, then fix the tail mass
    shift = (torch.logsumexp(s.masked_fill(~tail, -1e9), 1) - torch.logsumexp(s2.masked_fill(~tail, -1e9), 1))
    s2 = torch.where(tail, s2 + shift[:, None], s2)
    torch.testing.assert_close(kd_kl(s2, lp, t, idx), kd_kl(s, lp, t, idx), rtol=1e-4, atol=1e-5)


def test_ib_loss_combines_terms_and_respects_labelled_mask():
    torch.manual_seed(4)
    out = {"logits": torch.randn(4, 10, requires_grad=True), "mu": torch.randn(4, 8), "logvar": torch.zeros(4, 8),
           "mask": torch.ones(4, 8)}
    labels = torch.tensor([1, 2, 3, 4])
    teacher = F.log_softmax(torch.randn(4, 10), 1)
    r = ib_loss(out, labels, teacher_log_probs=teacher, temperature=2.0, beta=0.1, kd_weight=0.5)
    assert set(r) == {"loss", "task_loss", "kd_loss", "rate_loss", "feature_loss"}
    torch.testing.assert_close(r["loss"].detach(), r["task_loss"] + 0.5 * r["kd_loss"] + 0.1 * r["rate_loss"])
    torch.testing.assert_close(r["task_loss"], F.cross_entropy(out["logits"].detach(), labels))
    torch.testing.assert_close(r["rate_loss"], 0.5 * (out["mu"] ** 2).sum(1).mean())
    lab = torch.tensor([1.0, 0.0, 0.0, 1.0])
    r2 = ib_loss(out, labels, labelled=lab, beta=0.0)
    want = F.cross_entropy(out["logits"].detach()[[0, 3]], labels[[0, 3]], reduction="sum") / 4
    torch.testing.assert_close(r2["task_loss"], want)
    assert float(r2["kd_loss"]) == 0.0 and float(r2["rate_loss"]) == 0.0
    r2["loss"].backward()
    assert out["logits"].grad[1].abs().sum() == 0, "unlabelled samples get no CE gradient"


def test_awgn_noise_variance_follows_the_snr_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(4, 20000, dtype=torch.complex64)
    snr = torch.tensor([-5.0, 0.0, 10.0, 20.0])
    y, s_eff = apply_channel(x, snr, "awgn", g)
    measured = ((y - x).abs() ** 2).mean(1)
    torch.testing.assert_close(measured, 10 ** (-snr / 10), rtol=0.05, atol=0)
    torch.testing.assert_close(s_eff, snr)


def test_rayleigh_block_fading_zero_forcing_and_effective_snr():
    g = torch.Generator().manual_seed(1)
    x = torch.ones(4000, 8, dtype=torch.complex64)
    y, s_eff = apply_channel(x, 30.0, "rayleigh", g)
    # one coefficient per block: E|h|^2 = 1, so the mean linear effective SNR is the nominal one
    assert abs(float((10 ** (s_eff / 10)).mean()) / 1000.0 - 1.0) < 0.1
    # ZF output is unbiased: residual noise variance = no / |h|^2 per block
    resid = ((y - x).abs() ** 2).mean(1)
    ratio = resid / 10 ** (-s_eff / 10)
    assert 0.8 < float(ratio.median()) < 1.2
    with pytest.raises(ValueError, match="unknown channel"):
        apply_channel(x, 10.0, "teleport")


def test_channel_is_differentiable_and_mixed_channel_mixes():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 4, dtype=torch.complex64, requires_grad=True)
    y, s = mixed_channel(x, torch.full((64,), 10.0), 0.5, g)
    y.abs().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.abs()).all()
    faded = (s != 10.0).float().mean()
    assert 0.3 < float(faded) < 0.7
