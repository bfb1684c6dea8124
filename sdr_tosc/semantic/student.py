"""The semantic student: CNN encoder -> channel-adaptive module -> power normalisation -> k complex symbols,
and a decoder (symbols + SNR -> class logits).

Two paths through one model (CompressAI style):

* training: :meth:`SemanticStudent.forward` ``(images, snr_db, channel)`` runs encoder, a differentiable
  channel (:mod:`.channels`) and decoder and returns a dict (``logits``, ``mu``, ``logvar``, ``mask`` ...).
* the radio link: :meth:`SemanticStudent.encode` ``(images, snr_db) -> complex64 [B, k]`` and
  :meth:`SemanticStudent.decode` ``(symbols [B, k], snr_db) -> float32 logits [B, C]`` (numpy in and out).

Architecture (default ``fmnist-cnn``, 166k parameters = 1/20.4 of the fine-tuned EfficientNet-Lite0 teacher,
~7.5M multiply-adds per image)::

    uint8 [B,H,W,C] -> /255, -0.5 -> conv3x3(16) BN ReLU -> conv3x3/2(32) BN ReLU   (``stem_width`` = 16)
      -> conv3x3(64) BN ReLU -> conv3x3/2(96) BN ReLU
      -> FiLM(snr) -> conv1x1(6) BN ReLU -> flatten (294) -> linear -> mu [B, 2 k_max] (real); learned logvar
      -> z = mu (+ sigma * eps while training) -> per-symbol gain(snr) -> mask first k(snr) symbols
      -> complex pairs -> power normalisation (unit average power per *sent* symbol) -> channel
    (``stem_width`` = 0, the first shipped students: one conv5x5/2(32) instead of the two stem convolutions)
    decoder: y_eq [B, k] -> zero-pad to k_max -> MMSE shrink rho/(1+rho) -> linear(144) FiLM(snr) ReLU
      -> linear(96) ReLU -> linear(C)

The channel-adaptive module (``adaptive=True``) conditions both ends on the SNR in dB:

* an SNR embedding (small MLP on the clamped, scaled SNR) drives FiLM re-weighting of the encoder's
  feature maps (``x * 2 sigmoid(g) + b``, identity at initialisation), a per-real-dimension gain on the
  latent before power normalisation (an SNR-dependent power allocation across symbols), and FiLM on the
  decoder's hidden layer;
* an SNR-dependent symbol count: ``k(snr)`` symbols are sent, ``k_max`` at or below
  ``full_rate_below_db``, falling linearly to ``min_symbols`` at ``min_rate_above_db`` and above, rounded
  up to a multiple of ``symbol_step`` (default 64 at <= 0 dB, 40 at 10 dB, 16 at >= 20 dB). :meth:`num_symbols_for`
  gives the rule; :meth:`encode` returns exactly ``k(snr)`` symbols; :meth:`decode` accepts any length
  ``1..k_max`` (missing symbols count as zeros, which is what the training mask does);
* the decoder receives *equalised, unbiased* symbols (zero-forcing output of the modem) and applies the
  scalar MMSE shrink ``rho/(1+rho)`` (``rho`` = linear SNR) itself.

Without the module (``adaptive=False``, the fixed-SNR baseline ``fmnist-cnn-fixed``) there is no SNR input
anywhere: always ``k_max`` symbols (40 for ``fmnist-cnn-fixed``: what the adaptive student sends at 10 dB, and
its mean over -5..25 dB), no FiLM, no shrink.

On a radio link: the transmitter calls ``encode(images, snr_fb)`` with the SNR the receiver last reported
(its frame SNR, the definition in docs/design.md; an initial guess before the first report) and sends the ``k`` symbols
of each row as one frame; the receiver calls ``decode(frame.symbols, snr_est)`` with the equalised payload
symbols and its post-equalisation SNR estimate for that frame (``-10 log10(mean noise variance)`` of the
zero-forced symbols). ``k`` travels implicitly as the payload length, so the two ends never disagree on it
even when the SNR moved between the report and the frame.

SNR conditioning for inference is memoised per 0.1 dB (:meth:`conditioning`), so batch-1 encode+decode
costs only the convolutions and three small matrix products.

Checkpoints (one safetensors file: weights + config + checksum, no pickle) are written and read by
:mod:`.checkpoint`; its names (``save_checkpoint``, ``load_checkpoint``, ``read_checkpoint_metadata``,
``tensors_digest``, ``CHECKPOINT_FORMAT``, ``CHECKPOINT_VERSION``) stay importable from here.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, from_dict, to_dict
from .channels import apply_channel

ARCH = "cnn-film-v1"
#: SNRs are clamped to this range before they condition the networks.
SNR_CLAMP_DB = (-10.0, 35.0)


@dataclass(frozen=True)
class StudentConfig:
    """Everything needed to rebuild a student (stored in every checkpoint)."""

    arch: str = ARCH
    image_shape: tuple[int, int, int] = (28, 28, 1)  # H, W, C of the uint8 input
    num_classes: int = 10
    widths: tuple[int, int, int] = (32, 64, 96)
    stem_width: int = 0  # > 0: conv3x3/1(stem_width) at full resolution, then conv3x3/2(widths[0]); 0: conv5x5/2
    bottleneck_channels: int = 6
    hidden: int = 144
    hidden2: int = 96
    num_symbols: int = 64  # k_max complex symbols
    min_symbols: int = 16
    symbol_step: int = 4
    full_rate_below_db: float = 0.0
    min_rate_above_db: float = 20.0
    adaptive: bool = True
    snr_embed_dim: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.arch != ARCH:
            raise ValueError(f"unknown student architecture {self.arch!r} (this version builds {ARCH!r})")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        if self.image_shape[0] < 8 or self.image_shape[1] < 8:
            raise ValueError(f"images must be at least 8x8, got {self.image_shape}")
        if self.num_classes < 2:
            raise ValueError("num_classes must be >= 2")
        if not 1 <= self.min_symbols <= self.num_symbols:
            raise ValueError(f"need 1 <= min_symbols <= num_symbols, got {self.min_symbols}, {self.num_symbols}")
        if self.stem_width < 0:
            raise ValueError(f"stem_width must be >= 0, got {self.stem_width}")
        if self.symbol_step < 1:
            raise ValueError("symbol_step must be >= 1")
        if self.min_rate_above_db <= self.full_rate_below_db:
            raise ValueError("min_rate_above_db must be greater than full_rate_below_db")


#: Named configurations for :func:`create_model`.
MODELS: dict[str, StudentConfig] = {
    "fmnist-cnn": StudentConfig(stem_width=16, snr_embed_dim=24),
    "fmnist-cnn-fixed": StudentConfig(stem_width=16, snr_embed_dim=24, adaptive=False, num_symbols=40),
    "cifar-cnn": StudentConfig(image_shape=(32, 32, 3), widths=(32, 64, 96), bottleneck_channels=16),
}


def _conv_bn(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _fuse_conv_bn(seq: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``conv -> BN`` (eval statistics) folded into one convolution."""
    conv, bn = seq[0], seq[1]
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * inv[:, None, None, None]
    b = bn.bias - bn.running_mean * inv
    if conv.bias is not None:
        b = b + conv.bias * inv
    return w.detach(), b.detach()


def _conv_out(n: int, stride: int, k: int = 3) -> int:
    return (n + 2 * (k // 2) - k) // stride + 1


class SNREmbedding(nn.Module):
    """SNR in dB -> ``out_dim`` conditioning values (small MLP; last layer zero-initialised)."""

    def __init__(self, embed_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(1, embed_dim)
        self.fc2 = nn.Linear(embed_dim, out_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, snr_db: torch.Tensor) -> torch.Tensor:
        u = (snr_db.clamp(*SNR_CLAMP_DB) - 10.0) / 10.0
        return self.fc2(F.silu(self.fc1(u[:, None])))


class SemanticStudent(nn.Module):
    """Encoder / channel-adaptive module / decoder; see the module docstring."""

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        cfg = config or StudentConfig()
        self.config = cfg
        h, w, c = cfg.image_shape
        w1, w2, w3 = cfg.widths
        self.k_max = cfg.num_symbols
        d = 2 * self.k_max
        if cfg.stem_width:
            self.conv0 = _conv_bn(c, cfg.stem_width, 3, 1)
            self.conv1 = _conv_bn(cfg.stem_width, w1, 3, 2)
        else:
            self.conv1 = _conv_bn(c, w1, 5, 2)
        k1 = self.conv1[0].kernel_size[0]
        hh, ww = _conv_out(_conv_out(h, 2, k1), 2), _conv_out(_conv_out(w, 2, k1), 2)
        self.conv2 = _conv_bn(w1, w2, 3, 1)
        self.conv3 = _conv_bn(w2, w3, 3, 2)
        self.conv4 = _conv_bn(w3, cfg.bottleneck_channels, 1, 1)
        self.enc_fc = nn.Linear(cfg.bottleneck_channels * hh * ww, d)  # mu
        # q(z|x) = N(mu(x), diag(exp(logvar))): a learned per-dimension log-variance (the rate term's sigma)
        self.logvar = nn.Parameter(torch.full((d,), -4.0))
        self.dec_fc1 = nn.Linear(d, cfg.hidden)
        self.dec_fc2 = nn.Linear(cfg.hidden, cfg.hidden2)
        self.head = nn.Linear(cfg.hidden2, cfg.num_classes)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.adaptive:
            # encoder: FiLM on conv3 maps (scale+shift) and a per-dimension latent gain; decoder: FiLM
            self.enc_snr = SNREmbedding(cfg.snr_embed_dim, 2 * w3 + d)
            self.dec_snr = SNREmbedding(cfg.snr_embed_dim, 2 * cfg.hidden)
        self._cond_cache: OrderedDict[tuple[str, float], Any] = OrderedDict()

    # ------------------------------------------------------------------ symbol count and conditioning
    @property
    def adaptive(self) -> bool:
        return self.config.adaptive

    def num_symbols_for(self, snr_db: float) -> int:
        """How many complex symbols :meth:`encode` sends at ``snr_db`` (the SNR fed back by the receiver)."""
        cfg = self.config
        if not cfg.adaptive:
            return cfg.num_symbols
        s = float(snr_db)
        if not math.isfinite(s):
            raise ValueError(f"snr_db must be finite, got {snr_db}")
        t = (s - cfg.full_rate_below_db) / (cfg.min_rate_above_db - cfg.full_rate_below_db)
        t = min(1.0, max(0.0, t))
        k = cfg.num_symbols - t * (cfg.num_symbols - cfg.min_symbols)
        k = int(math.ceil(k / cfg.symbol_step - 1e-9) * cfg.symbol_step)
        return max(cfg.min_symbols, min(cfg.num_symbols, k))

    def _k_tensor(self, snr_db: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.num_symbols_for(float(s)) for s in snr_db.tolist()], device=snr_db.device)

    def _symbol_mask(self, k: torch.Tensor) -> torch.Tensor:
        """``[B, k_max]`` float mask, 1 for the first ``k`` symbols of each sample."""
        return (torch.arange(self.k_max, device=k.device)[None, :] < k[:, None]).float()

    def conditioning(self, snr_db: float, end: str) -> Any:
        """Memoised inference weights with the SNR conditioning folded in (``end`` = ``enc`` or ``dec``).

        Keyed per 0.1 dB. ``enc``: ``(w4, b4, wfc, bfc, k)``: conv4 with BN and the encoder FiLM folded in,
        and the latent layer restricted to the ``2k`` sent dimensions with the SNR gain folded in.
        ``dec``: ``(w1, b1)`` numpy: the first decoder layer with the MMSE shrink and FiLM folded in.
        The memo is cleared by ``train()``/``eval()`` and ``load_state_dict``.
        """
        key = (end, round(float(snr_db), 1))
        hit = self._cond_cache.get(key)
        if hit is not None:
            return hit
        s = torch.tensor([key[1]], dtype=torch.float32)
        with torch.no_grad():
            val = self._fold_enc(s) if end == "enc" else self._fold_dec(s)
        self._cond_cache[key] = val
        if len(self._cond_cache) > 1024:
            self._cond_cache.popitem(last=False)
        return val

    def _fold_enc(self, s: torch.Tensor) -> tuple[Any, ...]:
        w4, b4 = _fuse_conv_bn(self.conv4)
        k = self.num_symbols_for(float(s[0]))
        wfc, bfc = self.enc_fc.weight[:2 * k], self.enc_fc.bias[:2 * k]
        if self.adaptive:
            scale, shift, gain = self._enc_cond(s)
            # conv4(f * scale + shift) = (W4 * scale) f + (W4 @ shift + b4)   (1x1 convolution)
            b4 = b4 + (w4[:, :, 0, 0] * shift[0, :, 0, 0][None, :]).sum(1)
            w4 = w4 * scale[0, :, 0, 0][None, :, None, None]
            g = gain[0, :2 * k]
            wfc, bfc = wfc * g[:, None], bfc * g
        w4 = w4.contiguous(memory_format=torch.channels_last)
        return w4, b4.contiguous(), wfc.T.contiguous().numpy(), bfc.contiguous().numpy(), k

    def _fold_dec(self, s: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        w1, b1 = self.dec_fc1.weight, self.dec_fc1.bias
        if self.adaptive:
            rho = 10.0 ** (float(s[0]) / 10.0)
            w1 = w1 * (rho / (1.0 + rho))
            scale, shift = self._dec_cond(s)
            w1, b1 = w1 * scale[0][:, None], b1 * scale[0] + shift[0]
        return w1.T.contiguous().numpy(), b1.contiguous().numpy()

    def _engine(self) -> dict[str, Any]:
        """BN-fused, channels-last convolutions and numpy decoder weights shared by every SNR (memoised)."""
        eng = self._cond_cache.get(("engine", 0.0))
        if eng is None:
            with torch.no_grad():
                convs = []
                for seq in self._feature_convs():
                    w, b = _fuse_conv_bn(seq)
                    c = seq[0]
                    convs.append((w.contiguous(memory_format=torch.channels_last), b, c.stride, c.padding))
                eng = {"convs": convs,
                       "w2": self.dec_fc2.weight.T.contiguous().numpy(), "b2": self.dec_fc2.bias.numpy().copy(),
                       "wh": self.head.weight.T.contiguous().numpy(), "bh": self.head.bias.numpy().copy()}
            self._cond_cache[("engine", 0.0)] = eng
            self._cond_cache.move_to_end(("engine", 0.0), last=False)
        return eng

    def _feature_convs(self) -> tuple[nn.Sequential, ...]:
        """The convolutions before the SNR FiLM, in order (``conv0`` only with a full-resolution stem)."""
        head = (self.conv0,) if self.config.stem_width else ()
        return (*head, self.conv1, self.conv2, self.conv3)

    def _enc_cond(self, snr_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w3 = self.config.widths[2]
        e = self.enc_snr(snr_db)
        scale = 2.0 * torch.sigmoid(e[:, :w3])[:, :, None, None]
        shift = e[:, w3:2 * w3][:, :, None, None]
        gain = torch.exp(e[:, 2 * w3:].clamp(-3.0, 3.0))  # per real latent dimension
        return scale, shift, gain

    def _dec_cond(self, snr_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hd = self.config.hidden
        e = self.dec_snr(snr_db)
        return 2.0 * torch.sigmoid(e[:, :hd]), e[:, hd:]

    def train(self, mode: bool = True) -> SemanticStudent:
        self._cond_cache.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._cond_cache.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ input handling
    def prepare(self, images: Any) -> torch.Tensor:
        """uint8 ``[B, H, W, C]`` (numpy or torch; float in [0, 1] also accepted) -> float ``[B, C, H, W]``."""
        x = torch.as_tensor(images)
        if x.ndim == 3 and tuple(x.shape) == tuple(self.config.image_shape):
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.config.image_shape):
            raise ValueError(
                f"student expects images of shape [B, {', '.join(map(str, self.config.image_shape))}] "
                f"(uint8 [B, H, W, C]), got {tuple(x.shape)}; resize the images or use a student built for "
                f"this image shape"
            )
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif x.is_floating_point():
            x = x.float()
        else:
            raise ValueError(f"images must be uint8 (or float in [0, 1]), got {x.dtype}")
        return x.permute(0, 3, 1, 2).sub(0.5).contiguous()

    def _snr_batch(self, snr_db: Any, b: int, device: torch.device) -> torch.Tensor:
        s = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
        if s.ndim == 0:
            s = s.expand(b)
        if s.shape != (b,):
            raise ValueError(f"snr_db must be a scalar or have one value per image ([{b}]), got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError("snr_db must be finite")
        return s

    # ------------------------------------------------------------------ the two halves
    def encoder_features(self, x: torch.Tensor, cond: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared images -> ``(mu, logvar)`` real ``[B, 2 k_max]`` (before gain / mask / normalisation)."""
        f = x
        for seq in self._feature_convs():
            f = seq(f)
        if cond is not None:
            f = f * cond[0] + cond[1]
        f = self.conv4(f).flatten(1)
        mu = self.enc_fc(f)
        return mu, self.logvar.clamp(-12.0, 6.0).expand_as(mu)

    def to_symbols(self, z: torch.Tensor, gain: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """Real latent ``[B, 2 k_max]`` -> complex ``[B, k_max]``, unit average power over the active symbols."""
        if gain is not None:
            z = z * gain
        s = torch.complex(z[:, 0::2], z[:, 1::2]) * mask
        power = (s.real ** 2 + s.imag ** 2).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
        return s / torch.sqrt(power + 1e-9)

    def decoder_logits(self, y: torch.Tensor, snr_db: torch.Tensor, cond: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """Equalised complex ``[B, k_max]`` (zeros where not sent) -> logits ``[B, C]``."""
        if self.adaptive:
            rho = torch.pow(10.0, snr_db / 10.0)[:, None]
            y = y * (rho / (1.0 + rho))
        v = torch.stack((y.real, y.imag), dim=-1).flatten(1)
        hdn = self.dec_fc1(v)
        if cond is not None:
            hdn = hdn * cond[0] + cond[1]
        hdn = self.drop(F.relu(hdn))
        hdn = self.drop(F.relu(self.dec_fc2(hdn)))
        return self.head(hdn)

    # ------------------------------------------------------------------ training path
    def forward(
        self,
        images: Any,
        snr_db: Any,
        channel: str = "awgn",
        generator: torch.Generator | None = None,
        rayleigh_prob: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encoder -> differentiable channel -> decoder.

        ``snr_db``: scalar or ``[B]`` (the SNR the transmitter adapts to; for fading channels the decoder is
        told the instantaneous post-equalisation SNR, as the receiver's estimator would report).
        ``channel``: ``awgn``, ``rayleigh``, ``rician`` or ``none``; ``rayleigh_prob`` (training) mixes
        Rayleigh and AWGN per sample instead. In training mode the latent is sampled
        (``mu + sigma * eps``); in eval mode ``mu`` is sent.

        Returns ``logits [B, C]``, ``mu``/``logvar``/``mask`` ``[B, 2 k_max]`` (mask: 1 on sent real
        dimensions), ``symbols`` (sent, complex ``[B, k_max]``), ``received`` (equalised), ``snr_eff_db``
        and ``num_symbols [B]``.
        """
        from .channels import mixed_channel  # noqa: PLC0415

        x = self.prepare(images)
        b = x.shape[0]
        s = self._snr_batch(snr_db, b, x.device)
        if self.adaptive:
            scale, shift, gain = self._enc_cond(s)
            enc_cond: tuple[torch.Tensor, ...] | None = (scale, shift)
        else:
            enc_cond, gain = None, None
        mu, logvar = self.encoder_features(x, enc_cond)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu
        k = self._k_tensor(s)
        mask = self._symbol_mask(k)
        sym = self.to_symbols(z, gain, mask)
        if rayleigh_prob is not None:
            y, s_eff = mixed_channel(sym, s, rayleigh_prob, generator)
        else:
            y, s_eff = apply_channel(sym, s, channel, generator)
        y = y * mask  # nothing is received where nothing was sent
        dec_cond = self._dec_cond(s_eff) if self.adaptive else None
        logits = self.decoder_logits(y, s_eff, dec_cond)
        real_mask = mask.repeat_interleave(2, dim=1)
        return {"logits": logits, "mu": mu, "logvar": logvar, "mask": real_mask, "symbols": sym,
                "received": y, "snr_eff_db": s_eff, "num_symbols": k}

    # ------------------------------------------------------------------ the radio link
    def _scalar_snr(self, snr_db: Any, b: int) -> float:
        arr = np.asarray(snr_db, dtype=np.float64).reshape(-1)
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"snr_db must be a finite number, got {snr_db!r}")
        if arr.size not in (1, b):
            raise ValueError(f"snr_db must be one number (or one per image), got {arr.size} values for {b} images")
        if np.ptp(arr) > 0:
            raise ValueError("encode/decode take one SNR per call (a frame); split the batch by SNR")
        return float(arr[0])

    @torch.inference_mode()
    def encode(self, images: Any, snr_db: float) -> np.ndarray:
        """uint8 images ``[B, H, W, C]`` (or one ``[H, W, C]``) -> ``complex64 [B, k]``, ``k = num_symbols_for(snr_db)``.

        Each row has unit average power over its ``k`` symbols, so the SNR at the receiver is the symbol
        SNR of the docs/design.md definition. ``snr_db`` is the SNR the receiver last reported (one per call).
        Always the deterministic mean ``mu`` (eval mode); the model is switched to eval mode if needed.
        """
        if self.training:
            self.eval()
        x = self.prepare_nchw_fast(images)
        s = self._scalar_snr(snr_db, x.shape[0])
        eng = self._engine()
        w4, b4, wfc, bfc, k = self.conditioning(s, "enc")
        for w, bias, stride, pad in eng["convs"]:
            x = torch.relu_(F.conv2d(x, w, bias, stride, pad))
        x = torch.relu_(F.conv2d(x, w4, b4))
        z = x.flatten(1).numpy() @ wfc + bfc  # [B, 2k]
        z = z.view(np.complex64) if z.dtype == np.float32 else z.astype(np.float32).view(np.complex64)
        power = np.mean(z.real ** 2 + z.imag ** 2, axis=1, keepdims=True)
        return (z / np.sqrt(power + 1e-9)).astype(np.complex64, copy=False)

    def prepare_nchw_fast(self, images: Any) -> torch.Tensor:
        """Like :meth:`prepare` but keeps the NHWC memory layout (a channels-last NCHW view), for inference."""
        x = torch.as_tensor(images)
        if x.ndim == 3 and tuple(x.shape) == tuple(self.config.image_shape):
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.config.image_shape) or not (
                x.dtype == torch.uint8 or x.is_floating_point()):
            return self.prepare(images)  # raises the explanatory error
        if x.dtype == torch.uint8:
            x = x.float().mul_(1.0 / 255.0).sub_(0.5)
        else:
            x = x.float() - 0.5  # a new tensor: never modify the caller's images
        return x.permute(0, 3, 1, 2)

    def decode(self, symbols: Any, snr_db: float) -> np.ndarray:
        """Equalised symbols ``complex [B, k]`` (or ``[k]``), ``1 <= k <= k_max`` -> ``float32`` logits ``[B, C]``.

        ``snr_db``: the receiver's post-equalisation SNR estimate for the frame (rounded to 0.1 dB). Symbols
        beyond ``k`` count as not sent (zeros), as in training. Runs in numpy (no autograd).
        """
        if self.training:
            self.eval()
        if isinstance(symbols, torch.Tensor):
            symbols = symbols.detach().cpu().numpy()
        y = np.asarray(symbols)
        if not np.iscomplexobj(y):
            raise ValueError(f"symbols must be complex (complex64 [B, k]), got {y.dtype}")
        if y.ndim == 1:
            y = y[None]
        if y.ndim != 2 or not 1 <= y.shape[1] <= self.k_max:
            raise ValueError(f"symbols must be complex [B, k] with 1 <= k <= {self.k_max}, got {y.shape}")
        s = self._scalar_snr(snr_db, y.shape[0])
        eng = self._engine()
        w1, b1 = self.conditioning(s, "dec")
        k = y.shape[1]
        v = np.ascontiguousarray(y, dtype=np.complex64).view(np.float32)  # [B, 2k] interleaved re, im
        h = v @ w1[:2 * k] + b1
        np.maximum(h, 0, out=h)
        h = h @ eng["w2"] + eng["b2"]
        np.maximum(h, 0, out=h)
        return (h @ eng["wh"] + eng["bh"]).astype(np.float32, copy=False)

    @torch.inference_mode()
    def predict(self, images: Any, snr_db: Any, channel: str = "awgn", generator: torch.Generator | None = None,
                batch_size: int = 1000) -> np.ndarray:
        """Class predictions through a simulated channel (eval mode), batched."""
        was = self.training
        self.eval()
        try:
            out = []
            n = len(images)
            device = self.logvar.device  # inputs go to the model's device, predictions come back to the CPU
            s_all = torch.as_tensor(snr_db, dtype=torch.float32)
            for i in range(0, n, batch_size):
                s = s_all if s_all.ndim == 0 else s_all[i:i + batch_size]
                batch = torch.as_tensor(images[i:i + batch_size]).to(device)
                r = self(batch, s.to(device), channel=channel, generator=generator)
                out.append(r["logits"].argmax(1).cpu().numpy())
            return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        finally:
            self.train(was)

    # ------------------------------------------------------------------ bookkeeping
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "parameters": self.num_parameters(),
                "symbols": {str(s): self.num_symbols_for(s) for s in (-5, 0, 5, 10, 15, 20, 25)}}


# ---------------------------------------------------------------------------------------------- factory
def create_model(spec: str | StudentConfig | dict[str, Any] | os.PathLike[str] = "fmnist-cnn", **overrides: Any) -> SemanticStudent:
    """A student from a registered name (:data:`MODELS`), a :class:`StudentConfig`, a dict, or a checkpoint path."""
    if isinstance(spec, StudentConfig):
        cfg = spec
    elif isinstance(spec, dict):
        cfg = _config_from_dict(spec, "student config")
    elif isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".safetensors")):
        if overrides:
            raise ValueError("overrides cannot be applied to a checkpoint")
        from .checkpoint import load_checkpoint  # noqa: PLC0415

        return load_checkpoint(spec)
    elif isinstance(spec, str):
        if spec not in MODELS:
            raise ValueError(f"unknown student {spec!r}: registered are {', '.join(MODELS)} (or give a .safetensors path)")
        cfg = MODELS[spec]
    else:
        raise TypeError(f"create_model takes a name, StudentConfig, dict or path, got {type(spec).__name__}")
    if overrides:
        cfg = _config_from_dict({**to_dict(cfg), **overrides}, "student config")
    return SemanticStudent(cfg)


def _config_from_dict(d: dict[str, Any], source: str) -> StudentConfig:
    try:
        return from_dict(StudentConfig, d, source)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# Checkpoint I/O moved to .checkpoint; its names stay importable from here, resolved on first use because
# checkpoint imports this module (PEP 562 module __getattr__, no import cycle).
_CHECKPOINT_NAMES = frozenset({"CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint",
                               "read_checkpoint_metadata", "save_checkpoint", "tensors_digest"})


def __getattr__(name: str) -> Any:
    if name in _CHECKPOINT_NAMES:
        from . import checkpoint  # noqa: PLC0415

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
