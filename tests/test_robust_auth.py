"""Control and feedback sockets: 127.0.0.1 by default, CURVE with a shared secret when asked (issue 13)."""

from __future__ import annotations

import time

import pytest
import zmq

from sdr_tosc.auth import SECRET_ENV, derive_keys, is_loopback
from sdr_tosc.channel import ChannelControl, ChannelSimulator
from sdr_tosc.link.feedback import FeedbackReceiver, FeedbackSender

pytestmark = pytest.mark.timeout(60)
SECRET = "correct horse battery staple"


def test_defaults_bind_loopback():
    with ChannelSimulator(snr_db=10) as ch, FeedbackReceiver("tcp://127.0.0.1:0") as fb:
        assert ch.control_endpoint.startswith("tcp://127.0.0.1:") and fb.endpoint.startswith("tcp://127.0.0.1:")
    assert is_loopback("tcp://127.0.0.1:5") and not is_loopback("tcp://0.0.0.0:5")


def test_keys_are_deterministic_and_distinct():
    a, b = derive_keys(SECRET), derive_keys(SECRET)
    assert a == b and a["server_public"] != a["client_public"] and derive_keys(SECRET + "x") != a


def test_curve_control_needs_the_secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with ChannelSimulator(snr_db=10) as ch:
        assert ch.get()["snr_db"] == 10.0  # the client side has the secret too (same environment)
        monkeypatch.delenv(SECRET_ENV)
        plain = ChannelControl(ch.control_endpoint, timeout_s=0.5)
        with pytest.raises(TimeoutError):
            plain.request("shutdown")  # no handshake without the key: never reaches the channel
        plain.close()
        monkeypatch.setenv(SECRET_ENV, "another secret of enough length")
        wrong = ChannelControl(ch.control_endpoint, timeout_s=0.5)
        with pytest.raises(TimeoutError):
            wrong.request("set", snr_db=-20)
        wrong.close()
        monkeypatch.setenv(SECRET_ENV, SECRET)
        assert ch.running and ch.get()["snr_db"] == 10.0


def test_curve_feedback(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with FeedbackReceiver("tcp://127.0.0.1:0", initial_snr_db=3.0) as fb:
        with FeedbackSender(fb.endpoint) as good:
            good.send(1, 17.0)
            deadline = time.monotonic() + 5
            while fb.received < 1 and time.monotonic() < deadline:
                fb.poll(100)
        assert fb.snr_db() == pytest.approx(17.0)
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.PUSH)  # no keys: cannot connect
        s.setsockopt(zmq.LINGER, 0)
        s.connect(fb.endpoint)
        s.send(b'{"v":1,"seq":2,"snr_db":-40,"t":1}')
        time.sleep(0.3)
        fb.poll(100)
        s.close(0)
        assert fb.received == 1 and fb.snr_db() == pytest.approx(17.0)


def test_short_secret_refused(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(ValueError, match="at least 16"):
        FeedbackReceiver("tcp://127.0.0.1:0")
