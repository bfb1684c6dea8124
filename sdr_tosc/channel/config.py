"""Settings of the ZMQ channel simulator: one frozen dataclass, validated, changeable at run time."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .impairments import FADING_KINDS, MULTIPATH_PROFILES

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

    Noise: with ``snr_db`` set, the noise variance is chosen per burst so that the SNR (DESIGN.md: mean
    received signal power over the burst, after the channel and before noise, over the complex noise
    variance) equals ``snr_db + tx_gain_db - path_loss`` (``tx_gain_db`` sums the channel's setting and
    the one each TX radio sends in its header; path loss is ``path_loss_db`` plus the log-distance law for
    ``distance_m``). With fading the noise follows the *mean* received power, so the per-burst SNR varies
    with the fade; the truth report gives the exact value of every burst. With ``snr_db=None`` the noise
    floor is fixed at ``noise_dbfs`` and the signal is scaled by the link gain (a link budget).
    """

    sample_rate_hz: float = 1e6
    center_freq_hz: float = 2.4e9
    snr_db: float | None = 30.0
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
        self.validate()

    def validate(self) -> None:
        def finite(name: str, lo: float = -math.inf, hi: float = math.inf) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"channel setting {name}={v!r} must be a finite number in [{lo:g}, {hi:g}]")

        finite("sample_rate_hz", 1.0, 1e10)
        finite("center_freq_hz", 0.0, 1e12)
        if self.snr_db is not None:
            finite("snr_db", -50.0, 200.0)
        finite("noise_dbfs", -300.0, 50.0)
        for name in ("tx_gain_db", "path_loss_db", "cfo_hz", "rician_k_db", "iq_imbalance_db",
                     "iq_imbalance_deg", "dc_offset_i", "dc_offset_q", "idle_ref_power_dbfs"):
            finite(name)
        if abs(self.cfo_hz) > self.sample_rate_hz / 2:
            raise ValueError(f"cfo_hz={self.cfo_hz:g} exceeds half the sample rate ({self.sample_rate_hz / 2:g} Hz)")
        finite("sco_ppm", -1e4, 1e4)
        finite("delay_samples", 0.0, 1e7)
        finite("path_loss_exponent", 0.0, 10.0)
        if self.distance_m is not None:
            finite("distance_m", 1e-6, 1e9)
        finite("phase_noise_hz", 0.0, self.sample_rate_hz)
        finite("burst_drop_prob", 0.0, 1.0)
        for name in ("gap_samples", "gap_jitter_samples", "max_pending_samples", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"channel setting {name}={v!r} must be an int >= 0")
        if self.multipath not in MULTIPATH_PROFILES and self.multipath != "custom":
            raise ValueError(f"multipath={self.multipath!r}: choose one of {', '.join(MULTIPATH_PROFILES)} "
                             "or 'custom' with taps")
        if self.multipath == "custom" and not self.taps:
            raise ValueError("multipath='custom' needs taps (e.g. --taps '1,0.5j,0.2')")
        if self.fading not in FADING_KINDS:
            raise ValueError(f"fading={self.fading!r}: choose one of {', '.join(FADING_KINDS)}")

    def replace(self, **changes: Any) -> ChannelConfig:
        """A validated copy with ``changes``; unknown names raise ValueError listing the known ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown channel setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "taps" in changes and changes["taps"] is not None:
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
        try:
            return [complex(t.strip().replace(" ", "")) for t in value.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"bad taps {value!r}: use comma-separated complex numbers like '1,0.5+0.2j,0.1j'") from None
    out = []
    for t in value:
        if isinstance(t, (list, tuple)) and len(t) == 2:
            out.append(complex(float(t[0]), float(t[1])))
        elif isinstance(t, (int, float, complex)) and not isinstance(t, bool):
            out.append(complex(t))
        else:
            raise ValueError(f"bad tap {t!r}: give a number or [re, im]")
    return out
