"""Radio interface, registry, validation, and the ZMQ wire format (real sockets, no channel needed)."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from sdr_tosc.radio import RadioCounters, load_profile, open_radio, probe_backends
from sdr_tosc.radio import zmq as wire

pytestmark = pytest.mark.timeout(30)


def test_wire_format_round_trip_and_size():
    iq = (np.arange(5) * (0.1 + 0.05j)).astype(np.complex64)
    hdr = wire.Header(wire.FLAG_SOB | wire.FLAG_EOB, 7, 123456789, 1e6, 2.4e9, -3.5, iq.size)
    buf = wire.encode_message(iq, hdr)
    assert len(buf) == 48 + 8 * 5 and bytes(buf[:4]) == b"SDRQ"
    h2, iq2 = wire.decode_message(bytes(buf))
    assert h2 == hdr
    np.testing.assert_array_equal(iq2, iq)
    with pytest.raises(ValueError, match="bad magic"):
        wire.decode_message(b"XXXX" + bytes(buf[4:]))
    with pytest.raises(ValueError, match="header says 5 samples"):
        wire.decode_message(bytes(buf[:-8]))
    with pytest.raises(ValueError, match="whole number of complex64"):
        wire.decode_raw(b"123")
    with pytest.raises(ValueError, match="framed messages but this side is in raw mode"):
        wire.decode_raw(bytes(buf))
    assert wire.decode_request(wire.encode_request(4096)) == 4096
    assert wire.decode_request((4096).to_bytes(8, "little")) == 4096


@pytest.mark.parametrize("ep, msg", [
    ("udp://1.2.3.4:5", "tcp://HOST:PORT"),
    ("tcp://127.0.0.1:70000", "outside 0..65535"),
    ("tcp://127.0.0.1:0", "ephemeral"),
    (5.5, "must be a string"),
])
def test_bad_uri_is_rejected_with_a_hint(ep, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        open_radio("zmq", tx_endpoint=ep)


def test_registry_errors_name_the_choices():
    with pytest.raises(ValueError, match="zmq, pluto, usrp"):
        open_radio("hackrf")
    with pytest.raises(TypeError, match="unknown setting.*sample_rate"):
        open_radio("zmq", tx_endpoint="tcp://127.0.0.1:5555", samplerate=1e6)
    with pytest.raises(ValueError, match="needs tx_endpoint, rx_endpoint"):
        open_radio("zmq")
    assert {b.name for b in probe_backends()} == {"zmq", "pluto", "usrp", "file"}


def test_settings_are_validated_against_the_profile():
    with pytest.raises(ValueError, match=r"sample_rate_hz=2e\+10 is outside .*\[1, 1e\+09\]"):
        open_radio("zmq", tx_endpoint="tcp://127.0.0.1:5555", sample_rate_hz=2e10)
    with open_radio("zmq", tx_endpoint="tcp://127.0.0.1:5555", profile="pluto", sample_rate_hz=1e6,
                    center_freq_hz=2.4e9, tx_gain_db=-10) as r:
        with pytest.raises(ValueError, match=r"tx_gain_db=5 is outside the pluto profile's range \[-89.75, 0\]"):
            r.tx_gain_db = 5
        with pytest.raises(ValueError, match="center_freq_hz"):
            r.center_freq_hz = 100e6
        with pytest.raises(TypeError, match="must be a number"):
            r.rx_gain_db = "high"
        r.rx_gain_db = 30
        assert r.settings()["rx_gain_db"] == 30.0 and r.profile.name == "pluto"


def test_tx_rejects_wrong_dtype_shape_and_overrange():
    with open_radio("zmq", tx_endpoint="tcp://127.0.0.1:5555") as r:
        with pytest.raises(TypeError, match="complex64.*astype"):
            r.tx(np.zeros(10, np.complex128))
        with pytest.raises(TypeError, match="numpy array"):
            r.tx([0j, 1j])
        with pytest.raises(ValueError, match="1-D"):
            r.tx(np.zeros((2, 10), np.complex64))
        with pytest.raises(ValueError, match="empty"):
            r.tx(np.zeros(0, np.complex64))
        with pytest.raises(ValueError, match="exceeds full scale: max \\|x\\| = 1.5"):
            r.tx(np.full(4, 1.5, np.complex64))
        with pytest.raises(RuntimeError, match="no rx_endpoint"):
            r.rx(10)
        with pytest.raises(ValueError, match="> 0"):
            r.rx(0)
    with pytest.raises(RuntimeError, match="closed"):
        r.tx(np.zeros(4, np.complex64))


def test_raw_mode_interoperates_with_a_plain_zmq_peer_and_counts():
    """Raw mode is bare complex64: what gr-zeromq push_sink/pull_source exchange."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 5000)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = ctx.socket(zmq.PUSH)
    push_port = push.bind_to_random_port("tcp://127.0.0.1")
    try:
        with open_radio("zmq", tx_endpoint=f"tcp://127.0.0.1:{port}", rx_endpoint=f"tcp://127.0.0.1:{push_port}",
                        mode="raw", rx_pattern="pull", chunk_samples=1000) as r:
            x = (0.5 * np.exp(1j * np.arange(2500))).astype(np.complex64)
            r.tx(x)
            got = np.concatenate([np.frombuffer(pull.recv(), np.complex64) for _ in range(3)])
            np.testing.assert_array_equal(got, x)
            push.send(x[:1500].tobytes())
            push.send(x[1500:].tobytes())
            np.testing.assert_array_equal(r.rx(1000), x[:1000])
            np.testing.assert_array_equal(r.rx(1500), x[1000:])
            c = r.counters
            assert isinstance(c, RadioCounters) and c.tx_samples == 2500 and c.rx_samples == 2500
            assert c.dropped_samples == 0 and c.overflows == 0 and c.underflows == 0
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()


def test_framed_rx_counts_dropped_samples_from_timestamp_gaps():
    """A ROUTER peer that skips timeline samples: the radio counts the gap as dropped samples/overflow."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.RCVTIMEO, 5000)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with open_radio("zmq", rx_endpoint=f"tcp://127.0.0.1:{port}", chunk_samples=100, max_outstanding=1) as r:
            import threading

            def serve():
                ts = 0
                for i in range(2):
                    ident, _, req = router.recv_multipart()
                    n = wire.decode_request(req)
                    hdr = wire.Header(0, i, ts, 1e6, 2.4e9, 0.0, n)
                    router.send_multipart([ident, b"", bytes(wire.encode_message(np.zeros(n, np.complex64), hdr))])
                    ts += n + 50  # skip 50 samples

            th = threading.Thread(target=serve)
            th.start()
            r.rx(200)
            th.join(5)
            assert r.counters.dropped_samples == 50 and r.counters.overflows == 1
            assert r.rx_timestamp == 0
    finally:
        router.close(0)
        ctx.term()


def test_profiles_in_hardware_folder_match_builtin_copy():
    from sdr_tosc.radio.profiles import BUILTIN_PROFILES, LIMIT_KEYS, _from_mapping

    for name, data in BUILTIN_PROFILES.items():
        prof = load_profile(name)
        assert prof.source.endswith(f"hardware/{name}.toml")
        builtin = _from_mapping(name, data, "built-in")
        for key in (*LIMIT_KEYS, "sustained_rate_sps", "backend"):
            assert getattr(prof, key) == getattr(builtin, key), (name, key, prof.source)
    with pytest.raises(ValueError, match="unknown radio profile"):
        load_profile("hackrf")
    from sdr_tosc.radio.profiles import demo_defaults

    assert demo_defaults("pluto")["tx_uri"] == "ip:192.168.2.1" and demo_defaults("pluto")["rx_uri"] != "ip:192.168.2.1"
    assert load_profile("pluto").extra["tx_full_scale_codes"] == 2**14


@pytest.mark.parametrize("kind, module, hint", [
    ("pluto", "adi", "pip install 'sdr-tosc\\[pluto\\]'"),
    ("usrp", "uhd", "apt install python3-uhd"),
])
def test_missing_hardware_library_names_what_to_install(monkeypatch, kind, module, hint):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # makes `import adi` / `import uhd` fail
    with pytest.raises(ImportError, match=hint):
        open_radio(kind)


def test_importing_the_radio_package_loads_no_hardware_library():
    import subprocess
    import sys

    code = ("import sys, sdr_tosc.radio, sdr_tosc.channel; "
            "print(sorted(m for m in ('adi', 'iio', 'uhd', 'gnuradio', 'zmq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tx_close_delivers_queued_samples():
    """Closing a TX radio right after a burst must not drop what is still queued (as `sdr-tosc tx` does on exit)."""
    import numpy as np

    from sdr_tosc.channel import ChannelSimulator
    from sdr_tosc.radio import open_radio

    burst = np.full(600_000, 0.1, np.complex64)
    with ChannelSimulator(snr_db=20.0, seed=0) as ch:
        with open_radio("zmq", tx_endpoint=ch.in_endpoint, sample_rate_hz=1e6) as tx:
            tx.tx(burst)
        # the radio is closed: every sample must still reach the channel
        assert ch.wait_received(burst.size, timeout_s=10.0)["samples_in"] == burst.size
