r"""The information-bottleneck distillation objective.

Derivation
----------
Let ``Y`` be the task label, ``X`` the image, ``Z`` the encoder's stochastic latent
(``q(z|x) = N(mu(x), diag sigma^2)``), ``S = P(Z)`` the power-normalised symbols and ``S_hat`` what the
receiver sees after the channel. This is a Markov chain ``Y <-> X -> Z -> S -> S_hat``. The information
bottleneck asks for a representation that is informative about the task and cheap to send:

.. math::  \min \; -I(\hat S; Y) + \beta\, I(X; Z)

*Relevance.* For any variational decoder ``q(y|s_hat)`` (our decoder network),
``I(S_hat; Y) >= H(Y) + E[log q(y|s_hat)]``, so minimising the expected cross-entropy
``E[-log q(y|s_hat)]`` maximises a lower bound on ``I(S_hat; Y)``; the expectation runs over the channel,
i.e. over the SNRs and fading states drawn in training. The one-hot label is a one-sample estimate of the
true ``p(y|x)``; the teacher's distribution ``p_T(y|x)`` is a better (smoothed) one, and
``E_{p_T}[-log q(y|s_hat)] = H(p_T) + KL(p_T || q)``, so the teacher enters as a KL term. Softening both
with a temperature ``tau`` (and multiplying by ``tau^2`` to keep gradient scale, Hinton et al.) gives the
KD term. With a top-k cache only ``K < C`` teacher probabilities are known exactly; the *top-k-aware* KL
compares the two distributions on ``K + 1`` bins (the teacher's top-k classes and "all other classes"), which
is exact whatever the teacher did with the rest, instead of trusting the uniform rebuild of the tail.

*Rate.* ``I(X; S_hat) <= I(X; Z)`` (data processing: power normalisation and the channel come after ``Z``)
and ``I(X; Z) <= E_x KL(q(z|x) || r(z))`` for any prior ``r``; with ``r = N(0, I)``:

.. math::  KL = \tfrac12 \sum_{j \in \text{sent}} \left(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\right)

summed over the real dimensions actually sent (the first ``2 k(snr)``): dimensions that are never transmitted
carry no information to the receiver. (For a fixed ratio ``mu/sigma`` the KL is minimised at
``0.5 log(1 + mu^2/sigma^2)`` nats per dimension: the Gaussian channel capacity form, so ``beta`` really
prices nats sent.)

Objective (per batch; ``L`` = labelled samples, ``B`` = all samples):

.. math::

    \mathcal L = w_{task}\,\frac{1}{B}\sum_{i\in L} CE(y_i, q(\cdot|\hat s_i))
      + w_{kd}\,\tau^2 \frac{1}{B}\sum_i KL_{top\text{-}k}\big(p_T^{\tau}(\cdot|x_i)\,\|\,q^{\tau}(\cdot|\hat s_i)\big)
      + \beta\,\frac{1}{B}\sum_i KL\big(q(z|x_i)\,\|\,N(0,I)\big)
      + w_{feat}\,\frac{1}{B}\sum_i \|g(\mu_i) - f_T(x_i)\|^2 / D

The last (optional) term regresses a train-only projection ``g`` of the latent mean onto the cache's
PCA-compressed teacher features ``f_T`` (``D`` components); it is not part of the shipped inference path.
:func:`ib_loss` returns ``{loss, task_loss, kd_loss, rate_loss, feature_loss}`` (timm style).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, 1))`` summed over the (masked) last dimension: ``[B]`` nats."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    if mask is not None:
        kl = kl * mask
    return kl.sum(dim=-1)


def kd_kl(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    temperature: float,
    topk_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """``tau^2 * KL(p_T^tau || softmax(student / tau))`` per sample, ``[B]``.

    ``teacher_log_probs`` ``[B, C]``: the teacher's log-distribution already at temperature ``tau`` (as
    :meth:`TeacherCache.log_soft_targets` gives it). With ``topk_index`` ``[B, K]`` and ``K < C`` the KL is
    taken over ``K + 1`` bins: the top-k classes and the merged rest (exact for a top-k cache).
    """
    t = float(temperature)
    log_q = F.log_softmax(student_logits / t, dim=1)
    log_p = teacher_log_probs
    c = student_logits.shape[1]
    if topk_index is not None and topk_index.shape[1] < c:
        lp_k = log_p.gather(1, topk_index)
        lq_k = log_q.gather(1, topk_index)
        rest_p = torch.log1p(-lp_k.exp().sum(1, keepdim=True).clamp(max=1.0 - 1e-6))
        rest_q = torch.log1p(-lq_k.exp().sum(1, keepdim=True).clamp(max=1.0 - 1e-6))
        log_p = torch.cat((lp_k, rest_p), dim=1)
        log_q = torch.cat((lq_k, rest_q), dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    return kl * t * t


def ib_loss(
    out: dict[str, torch.Tensor],
    labels: torch.Tensor | None,
    labelled: torch.Tensor | None = None,
    teacher_log_probs: torch.Tensor | None = None,
    topk_index: torch.Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 1e-3,
    task_weight: float = 1.0,
    kd_weight: float = 1.0,
    feature_pred: torch.Tensor | None = None,
    teacher_features: torch.Tensor | None = None,
    feature_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The objective of the module docstring for one batch of :meth:`SemanticStudent.forward` output.

    ``labelled``: bool ``[B]`` (which samples may use their label; default all); the cross-entropy is
    summed over them and divided by ``B``, so every sample weighs the same in every term. Terms whose inputs are
    missing are 0. Returns ``{loss, task_loss, kd_loss, rate_loss, feature_loss}`` (0-d tensors).
    """
    logits = out["logits"]
    zero = logits.new_zeros(())
    task = zero
    if labels is not None and task_weight:
        ce = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        if labelled is not None:
            # per-sample weight 1/B as for the KD term: normalising by the few labelled samples instead
            # gives them ~1/fraction times the weight and a gradient as noisy as a batch of |L| (measured:
            # -8 points at 5 % labels)
            task = (ce * labelled).sum() / ce.shape[0]
        else:
            task = ce.mean()
    kd = zero
    if teacher_log_probs is not None and kd_weight:
        kd = kd_kl(logits, teacher_log_probs, temperature, topk_index).mean()
    rate = zero
    if beta:
        rate = gaussian_kl(out["mu"], out["logvar"], out.get("mask")).mean()
    feat = zero
    if feature_pred is not None and teacher_features is not None and feature_weight:
        feat = F.mse_loss(feature_pred, teacher_features)
    loss = task_weight * task + kd_weight * kd + beta * rate + feature_weight * feat
    return {"loss": loss, "task_loss": task.detach(), "kd_loss": kd.detach(), "rate_loss": rate.detach(),
            "feature_loss": feat.detach()}
