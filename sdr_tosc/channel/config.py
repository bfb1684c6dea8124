"""Settings of the ZMQ channel simulator: one frozen dataclass, validated, changeable at run time."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..boundary import finite as check_finite
from ..boundary import short
from .impairments import FADING_KINDS, MULTIPATH_PROFILES

#: Ranges of the settings that scale the signal (dB); with the per-message TX gain their sum is capped
#: again per burst (``core.MAX_LINK_GAIN_DB``), so no setting can overflow float32 samples.
TX_GAIN_DB_RANGE = (-200.0, 100.0)
PATH_LOSS_DB_RANGE = (-100.0, 400.0)
#: Largest idle gap / delay in samples (the timeline allocates them: 2**22 complex64 = 32 MiB).
MAX_GAP_SAMPLES = 1 << 22
#: Most custom multipath taps (sample-spaced).
MAX_TAPS = 4096

#: Fields that the control socket may change while the simulator runs.
RUNTIME_FIELDS = (
    "snr_db", "noise_dbfs", "tx_gain_db", "path_loss_db", "distance_m", "path_loss_exponent", "cfo_hz",
    "sco_ppm", "delay_samples", "multipath", "taps", "fading", "rician_k_db", "iq_imbalance_db",
    "iq_imbalance_deg", "dc_offset_i", "dc_offset_q", "phase_noise_hz", "burst_drop_prob", "gap_samples",
    "gap_jitter_samples", "center_freq_hz",
)


@dataclass(frozen=True)
class ChannelConfig:
    """What the simulated air does to samples. Units are in the names.

    Noise: with ``snr_db`` set, the noise variance is chosen per burst so that the SNR (docs/design.md: mean
    received signal power over the burst, after the channel and before noise, over the complex noise
    variance) equals ``snr_db + tx_gain_db - path_loss`` (``tx_gain_db`` sums the channel's setting and
    the one each TX radio sends in its header; path loss is ``path_loss_db`` plus the log-distance law for
    ``distance_m``). With fading the noise follows the *mean* received power, so the per-burst SNR varies
    with the fade; the truth report gives the exact value of every burst. With ``snr_db=None`` the noise
    floor is fixed at ``noise_dbfs`` and the signal is scaled by the link gain (a link budget).
    """

    sample_rate_hz: float = 1e6
    center_freq_hz: float = 2.4e9
    snr_db: float | None = 20.0  # the one --snr-db default of every verb (docs/design.md)
    noise_dbfs: float = -60.0
    tx_gain_db: float = 0.0
    path_loss_db: float = 0.0
    distance_m: float | None = None
    path_loss_exponent: float = 2.0
    cfo_hz: float = 0.0
    sco_ppm: float = 0.0
    delay_samples: float = 0.0
    multipath: str = "flat"
    taps: tuple[complex, ...] | None = None
    fading: str = "none"
    rician_k_db: float = 6.0
    iq_imbalance_db: float = 0.0
    iq_imbalance_deg: float = 0.0
    dc_offset_i: float = 0.0
    dc_offset_q: float = 0.0
    phase_noise_hz: float = 0.0
    burst_drop_prob: float = 0.0
    gap_samples: int = 1000
    gap_jitter_samples: int = 1000
    idle_ref_power_dbfs: float = -15.0
    seed: int = 0
    max_pending_samples: int = 1 << 21

    def __post_init__(self) -> None:
        if self.taps is not None and not (isinstance(self.taps, tuple)
                                          and all(isinstance(t, complex) for t in self.taps)):
            if not isinstance(self.taps, (str, list, tuple)):
                raise ValueError(f"taps must be a string or a list, got {type(self.taps).__name__}")
            object.__setattr__(self, "taps", tuple(parse_taps(self.taps)))  # TOML lists, [re, im] pairs
        self.validate()

    def validate(self) -> None:
        def finite(name: str, lo: float = -math.inf, hi: float = math.inf) -> None:
            check_finite(f"channel setting {name}", getattr(self, name), lo, hi)

        finite("sample_rate_hz", 1.0, 1e10)
        finite("center_freq_hz", 0.0, 1e12)
        if self.snr_db is not None:
            finite("snr_db", -50.0, 200.0)
        finite("noise_dbfs", -300.0, 50.0)
        finite("tx_gain_db", *TX_GAIN_DB_RANGE)
        finite("path_loss_db", *PATH_LOSS_DB_RANGE)
        finite("cfo_hz")
        finite("rician_k_db", -50.0, 50.0)
        finite("iq_imbalance_db", -20.0, 20.0)
        finite("iq_imbalance_deg", -90.0, 90.0)
        finite("dc_offset_i", -1e3, 1e3)
        finite("dc_offset_q", -1e3, 1e3)
        finite("idle_ref_power_dbfs", -300.0, 50.0)
        if abs(self.cfo_hz) > self.sample_rate_hz / 2:
            raise ValueError(f"cfo_hz={self.cfo_hz:g} exceeds half the sample rate ({self.sample_rate_hz / 2:g} Hz)")
        finite("sco_ppm", -1e4, 1e4)
        finite("delay_samples", 0.0, MAX_GAP_SAMPLES)
        finite("path_loss_exponent", 0.0, 10.0)
        if self.distance_m is not None:
            finite("distance_m", 1e-6, 1e9)
        finite("phase_noise_hz", 0.0, self.sample_rate_hz)
        finite("burst_drop_prob", 0.0, 1.0)
        for name, hi in (("gap_samples", MAX_GAP_SAMPLES), ("gap_jitter_samples", MAX_GAP_SAMPLES),
                         ("max_pending_samples", 1 << 26), ("seed", (1 << 63) - 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise ValueError(f"channel setting {name}={short(v)} must be an int in [0, {hi}]")
        if self.taps is not None:
            if len(self.taps) > MAX_TAPS:
                raise ValueError(f"channel setting taps has {len(self.taps)} taps; at most {MAX_TAPS}")
            if not all(math.isfinite(t.real) and math.isfinite(t.imag) and abs(t) <= 1e6 for t in self.taps):
                raise ValueError("channel setting taps must be finite complex numbers with |h| <= 1e6")
            if self.multipath == "custom" and not any(t != 0 for t in self.taps):
                raise ValueError("channel setting taps are all zero: the channel would block every signal")
        if not isinstance(self.multipath, str) or (self.multipath not in MULTIPATH_PROFILES and self.multipath != "custom"):
            raise ValueError(f"multipath={short(self.multipath)}: choose one of {', '.join(MULTIPATH_PROFILES)} "
                             "or 'custom' with taps")
        if self.multipath == "custom" and not self.taps:
            raise ValueError("multipath='custom' needs taps (e.g. --taps '1,0.5j,0.2')")
        if not isinstance(self.fading, str) or self.fading not in FADING_KINDS:
            raise ValueError(f"fading={short(self.fading)}: choose one of {', '.join(FADING_KINDS)}")

    def replace(self, **changes: Any) -> ChannelConfig:
        """A validated copy with ``changes``; unknown names raise ValueError listing the known ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown channel setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "taps" in changes and changes["taps"] is not None:
            if not isinstance(changes["taps"], (str, list, tuple)):
                raise ValueError(f"taps must be a string or a list, got {type(changes['taps']).__name__}")
            changes["taps"] = tuple(parse_taps(changes["taps"]))
            changes.setdefault("multipath", "custom")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.taps is not None:
            d["taps"] = [[c.real, c.imag] for c in self.taps]
        return d


def parse_taps(value: Any) -> list[complex]:
    """Taps from '1,0.5+0.2j,0.1', a list of numbers, or a list of [re, im] pairs (JSON)."""
    if isinstance(value, str):
        if len(value) > 64 * MAX_TAPS:
            raise ValueError(f"bad taps: a {len(value)}-character string is too long")
        try:
            return [complex(t.strip().replace(" ", "")) for t in value.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"bad taps {short(value)}: use comma-separated complex numbers like '1,0.5+0.2j,0.1j'") from None
    out = []
    if len(value) > MAX_TAPS:
        raise ValueError(f"bad taps: {len(value)} taps, at most {MAX_TAPS}")
    for t in value:
        if isinstance(t, (list, tuple)) and len(t) == 2 and all(
                isinstance(u, (int, float)) and not isinstance(u, bool) for u in t):
            out.append(complex(float(t[0]), float(t[1])))
        elif isinstance(t, (int, float, complex)) and not isinstance(t, bool):
            out.append(complex(t))
        else:
            raise ValueError(f"bad tap {short(t)}: give a number or [re, im]")
    return out
