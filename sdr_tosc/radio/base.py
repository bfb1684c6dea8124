"""The Radio interface every backend implements (zmq, pluto, usrp, file) and the backend plugin contract.

Samples are ``numpy.complex64``, 1-D, full scale ``|x| <= 1`` (docs/design.md); each backend converts to its
driver's convention. Settings are validated properties with units in their names and are checked against
the device's :class:`~sdr_tosc.radio.profiles.RadioProfile`. Counters of dropped samples, overflows and
underflows are kept per radio and readable at any time through :attr:`Radio.counters`.

Plugin contract (what :mod:`sdr_tosc.radio.registry` asks of a backend class, so a new backend is one
module plus one registration line): ``kind`` (its name on the command line), ``default_profile``,
``probe()`` (can it be used on this machine, and if not what to install; must not fail when the
hardware library is missing), ``from_uri(uri, role)`` (the settings that open it from the command
line's ``--uri``), ``uri_help`` and ``packages`` (for ``sdr-tosc info``), ``can_transmit`` and
``can_receive``.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any

import numpy as np

from .profiles import RadioProfile, load_profile

log = logging.getLogger(__name__)

FULL_SCALE_TOLERANCE = 1.0 + 1e-5


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """Whether a backend is usable here: ``detail`` is version info when it is, what to install when not."""

    name: str
    usable: bool
    detail: str


@dataclasses.dataclass
class RadioCounters:
    """Running totals since the radio was opened (a copy is returned by :attr:`Radio.counters`).

    ``dropped_samples``: samples known lost between reads (timestamp gaps, overflow). ``overflows``: RX
    events where the host did not keep up. ``underflows``: TX events where the device ran out of samples.
    """

    tx_samples: int = 0
    rx_samples: int = 0
    tx_bursts: int = 0
    rx_calls: int = 0
    dropped_samples: int = 0
    overflows: int = 0
    underflows: int = 0
    late_bursts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def check_iq(iq: Any, name: str = "iq", check_full_scale: bool = True) -> np.ndarray:
    """Validate a burst for tx(): 1-D non-empty complex64 with ``|x| <= 1``; returns it contiguous."""
    if not isinstance(iq, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of complex64 samples, got {type(iq).__name__}")
    if iq.dtype != np.complex64:
        raise TypeError(
            f"{name} must have dtype complex64 (full scale |x| <= 1), got {iq.dtype}; "
            "convert with iq.astype(np.complex64)"
        )
    if iq.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one stream of samples), got shape {iq.shape}")
    if iq.size == 0:
        raise ValueError(f"{name} is empty: nothing to transmit")
    iq = np.ascontiguousarray(iq)
    if check_full_scale:
        f = iq.view(np.float32)
        # fast screen (two SIMD reductions, no temporaries): |I|, |Q| <= 1/sqrt(2) implies |x| <= 1
        if max(float(f.max()), -float(f.min())) <= 0.7071:
            return iq
        peak2 = float(np.max(f[0::2] * f[0::2] + f[1::2] * f[1::2]))
        if not peak2 <= FULL_SCALE_TOLERANCE**2:  # also catches NaN
            raise ValueError(
                f"{name} exceeds full scale: max |x| = {np.sqrt(peak2):.4g} > 1; scale it down "
                "(e.g. iq / np.abs(iq).max()) or lower the modem's amplitude"
            )
    return iq


def check_count(n: Any, name: str = "n") -> int:
    """Validate a sample count for rx(): a positive integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int number of samples, got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"{name} must be > 0 samples, got {n}")
    return int(n)


class Radio(abc.ABC):
    """A half- or full-duplex radio: ``tx(iq)``, ``rx(n) -> iq``, validated settings, counters.

    Subclasses implement :meth:`_tx`, :meth:`_rx`, :meth:`_close` and may override the ``_apply_*`` hooks
    that push a validated setting to the device. Use as a context manager::

        with open_radio("zmq", tx_endpoint="tcp://127.0.0.1:5555", sample_rate_hz=1e6) as radio:
            radio.tx(iq)
    """

    kind: str = "abstract"
    #: profile (``hardware/<name>.toml``) used when the caller names none
    default_profile: str = "zmq"
    #: what ``--uri`` means for this backend (shown in ``--help``)
    uri_help: str = ""
    #: (label, distribution name or None, module) of the libraries it needs, for ``sdr-tosc info``
    packages: tuple[tuple[str, str | None, str], ...] = ()
    can_transmit: bool = True
    can_receive: bool = True
    #: the device's serial number when the backend can read it (recordings, calibration file names)
    serial: str | None = None
    #: samples the radio can hold between the air and rx() (kernel or host queue): after a pause, a reader
    #: may have to read this many older samples before it reaches what was just sent (wait budgets)
    rx_queue_samples: int = 0

    @classmethod
    def probe(cls) -> BackendStatus:
        """Can this backend be used on this machine? Never raises for a missing library."""
        return BackendStatus(cls.kind, True, "no hardware library needed")

    @classmethod
    def from_uri(cls, uri: str | None, role: str) -> dict[str, Any]:
        """Settings that open this backend from a command line's ``--uri`` for ``role`` (tx, rx or trx)."""
        if role not in ("tx", "rx", "trx"):
            raise ValueError(f"radio role must be 'tx', 'rx' or 'trx', got {role!r}")
        if role in ("tx", "trx") and not cls.can_transmit:
            raise ValueError(f"the {cls.kind} radio cannot transmit; use it as a receiver only")
        if role in ("rx", "trx") and not cls.can_receive:
            raise ValueError(f"the {cls.kind} radio cannot receive; use it as a transmitter only")
        return {"uri": uri} if uri else {}

    def __init__(
        self,
        profile: RadioProfile | str,
        *,
        center_freq_hz: float,
        sample_rate_hz: float,
        tx_gain_db: float,
        rx_gain_db: float,
        check_full_scale: bool = True,
    ) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self._counters = RadioCounters()
        self._closed = False
        self.check_full_scale = bool(check_full_scale)
        self._settings: dict[str, float] = {}
        # validate everything before touching the device, so bad input fails fast and names the limit
        self._settings = {
            "center_freq_hz": self.profile.check("center_freq_hz", center_freq_hz),
            "sample_rate_hz": self.profile.check("sample_rate_hz", sample_rate_hz),
            "tx_gain_db": self.profile.check("tx_gain_db", tx_gain_db),
            "rx_gain_db": self.profile.check("rx_gain_db", rx_gain_db),
        }

    # -- settings -------------------------------------------------------------------------------------
    def _set(self, key: str, value: float) -> None:
        self._check_open()
        value = self.profile.check(key, value)
        getattr(self, f"_apply_{key}")(value)
        self._settings[key] = value

    @property
    def center_freq_hz(self) -> float:
        """RF centre frequency (TX and RX LO) in Hz."""
        return self._settings["center_freq_hz"]

    @center_freq_hz.setter
    def center_freq_hz(self, value: float) -> None:
        self._set("center_freq_hz", value)

    @property
    def sample_rate_hz(self) -> float:
        """Complex sample rate in samples per second (Hz)."""
        return self._settings["sample_rate_hz"]

    @sample_rate_hz.setter
    def sample_rate_hz(self, value: float) -> None:
        self._set("sample_rate_hz", value)

    @property
    def tx_gain_db(self) -> float:
        """TX gain in dB (on a Pluto this is the attenuation as a negative number, -89.75..0)."""
        return self._settings["tx_gain_db"]

    @tx_gain_db.setter
    def tx_gain_db(self, value: float) -> None:
        self._set("tx_gain_db", value)

    @property
    def rx_gain_db(self) -> float:
        """RX gain in dB (manual gain control; AGC off)."""
        return self._settings["rx_gain_db"]

    @rx_gain_db.setter
    def rx_gain_db(self, value: float) -> None:
        self._set("rx_gain_db", value)

    def settings(self) -> dict[str, Any]:
        """Current settings (for saving beside results)."""
        out = {"kind": self.kind, "profile": self.profile.name, **self._settings}
        if self.serial:
            out["serial"] = self.serial
        return out

    def _apply_center_freq_hz(self, value: float) -> None:  # noqa: B027 - optional hook
        pass

    def _apply_sample_rate_hz(self, value: float) -> None:  # noqa: B027 - optional hook
        pass

    def _apply_tx_gain_db(self, value: float) -> None:  # noqa: B027 - optional hook
        pass

    def _apply_rx_gain_db(self, value: float) -> None:  # noqa: B027 - optional hook
        pass

    # -- streaming ------------------------------------------------------------------------------------
    def tx(self, iq: np.ndarray, **kwargs: Any) -> None:
        """Transmit one burst ``iq: complex64[n]`` (full scale |x| <= 1)."""
        self._check_open()
        iq = check_iq(iq, check_full_scale=self.check_full_scale)
        self._tx(iq, **kwargs)
        self._counters.tx_samples += iq.size
        self._counters.tx_bursts += 1

    def rx(self, n: int) -> np.ndarray:
        """Receive ``n`` consecutive samples: ``complex64[n]``, full scale |x| <= 1."""
        self._check_open()
        n = check_count(n)
        iq = self._rx(n)
        self._counters.rx_samples += iq.size
        self._counters.rx_calls += 1
        return iq

    @property
    def counters(self) -> RadioCounters:
        """A snapshot of the running counters (dropped samples, overflows, underflows ...)."""
        return dataclasses.replace(self._counters)

    @abc.abstractmethod
    def _tx(self, iq: np.ndarray, **kwargs: Any) -> None: ...

    @abc.abstractmethod
    def _rx(self, n: int) -> np.ndarray: ...

    # -- life cycle -----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.kind} radio is closed; open a new one with open_radio()")

    def close(self) -> None:
        """Release the device; idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Radio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"<{type(self).__name__} {self.profile.name} fc={s.get('center_freq_hz', 0) / 1e6:g} MHz "
            f"fs={s.get('sample_rate_hz', 0) / 1e6:g} Msps{' closed' if self._closed else ''}>"
        )
