"""The backend plugin contract: a new backend is its own module plus one registration; the command line's
--radio choices, --uri help and `sdr-tosc info` pick it up with no table edited."""

from __future__ import annotations

import argparse
import json
import sys
import types

import numpy as np
import pytest

from sdr_tosc.radio import registry
from sdr_tosc.radio.base import BackendStatus, Radio


class EchoRadio(Radio):
    """A stand-in third-party backend: what it transmits comes back on receive."""

    kind = "echo"
    default_profile = "zmq"
    uri_help = "echo:NAME (a loopback buffer)"
    packages = (("numpy-for-echo", None, "numpy"),)

    @classmethod
    def probe(cls) -> BackendStatus:
        return BackendStatus("echo", True, "always there")

    @classmethod
    def from_uri(cls, uri, role):  # noqa: ANN001, ANN206
        super().from_uri(uri, role)
        if not (uri or "").startswith("echo:"):
            raise ValueError(f"echo uri must look like echo:NAME, got {uri!r}")
        return {"name": uri[5:]}

    def __init__(self, name: str, *, sample_rate_hz: float = 1e6, center_freq_hz: float = 1e9,
                 tx_gain_db: float = 0.0, rx_gain_db: float = 0.0) -> None:
        super().__init__("zmq", center_freq_hz=center_freq_hz, sample_rate_hz=sample_rate_hz,
                         tx_gain_db=tx_gain_db, rx_gain_db=rx_gain_db)
        self.name, self.serial, self._buf = name, f"ECHO-{name}", np.zeros(0, np.complex64)

    def _tx(self, iq, **_):  # noqa: ANN001, ANN202
        self._buf = np.concatenate([self._buf, iq])

    def _rx(self, n):  # noqa: ANN001, ANN202
        out = np.zeros(n, np.complex64)
        k = min(n, self._buf.size)
        out[:k], self._buf = self._buf[:k], self._buf[k:]
        return out


@pytest.fixture()
def echo_registered(monkeypatch):
    mod = types.ModuleType("echo_backend_for_test")
    mod.EchoRadio = EchoRadio
    monkeypatch.setitem(sys.modules, "echo_backend_for_test", mod)
    monkeypatch.setitem(registry.BACKENDS, "echo", "echo_backend_for_test:EchoRadio")
    yield


def test_a_registered_backend_reaches_every_table(echo_registered, tmp_path, capsys):
    from sdr_tosc.cli import main
    from sdr_tosc.commands.linkargs import add_radio_args, open_radio_from

    assert "echo" in registry.backend_kinds(transmit=True, receive=True)
    p = argparse.ArgumentParser()
    add_radio_args(p, "rx")
    assert "echo:NAME" in p.format_help()
    args = p.parse_args(["--radio", "echo", "--uri", "echo:a", "--rx-gain-db", "3"])
    args.sample_rate_hz = 2e6
    with open_radio_from(args.radio, args.uri, "rx", {}, args) as r:
        assert (r.name, r.rx_gain_db, r.sample_rate_hz) == ("a", 3.0, 2e6)
        r.tx(np.full(4, 0.5, np.complex64))
        assert np.allclose(r.rx(6)[:4], 0.5) and r.settings()["serial"] == "ECHO-a"
    with pytest.raises(ValueError, match="echo:NAME"):
        registry.open_from_uri("echo", "nope", "rx")
    out = tmp_path / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["backends"]["echo"] == {"usable": True, "detail": "always there"}
    assert "numpy-for-echo" in data["packages"]


def test_registration_is_checked():
    with pytest.raises(ValueError, match="module:Class"):
        registry.register_backend("soapy", "no_colon_here")
    with pytest.raises(ValueError, match="identifier"):
        registry.register_backend("two words", "a:B")
    with pytest.raises(ValueError, match="unknown radio backend 'nope'"):
        registry.backend_class("nope")
    with pytest.raises(TypeError, match="unknown setting"):
        registry.open_radio("usrp", args="type=virtual", device_args="type=b200")
