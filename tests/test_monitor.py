"""The live monitor: link events over real ZMQ sockets, the bounded state, the page served by a real process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from _student_fixtures import fmnist

from sdr_tosc.link import LinkConfig
from sdr_tosc.link.events import STAGES, EventPublisher, LinkEvents, evm_percent
from sdr_tosc.link.loopback import open_loopback
from sdr_tosc.link.session import run_link
from sdr_tosc.monitor import MonitorProcess
from sdr_tosc.monitor.server import ChannelLink, Subscriber
from sdr_tosc.monitor.state import MonitorState
from sdr_tosc.semantic.student import load_checkpoint
from sdr_tosc.zoo import default_student_path


def _wait(cond, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture(scope="module")
def student():
    pytest.importorskip("torch")
    return load_checkpoint(default_student_path())


def test_events_flow_over_zmq_and_malformed_messages_are_counted_not_fatal():
    state = MonitorState(history=50)
    with EventPublisher() as pub:
        sub = Subscriber(state, [pub.endpoint]).start()
        try:
            assert pub.wait_subscriber(5.0)
            for i in range(120):  # more than the history: the oldest are forgotten, the totals are not
                pub.publish({"k": "frame", "seq": i, "pred": i % 3, "label": 0, "sent": i + 1, "lost": 0, "n_symbols": 16,
                             "snr_db": 7.5, "t_stream": i * 1e-3, "lat": {"decode": 2.0, "end_to_end": 9.0}})
            pub._sock.send(b"\xff not json")
            pub.publish({"k": "frame", "lat": "x", "pred": "y"})  # wrong types: taken as unknown values
            pub.publish({"k": "spectrum", "psd_db": [1.0, "x"], "f0_hz": 0, "df_hz": 1})
            pub.publish({"k": "image", "shape": [28, 28, 1], "data": "AAAA"})  # data of the wrong size
            pub.publish({"k": "what"})
            pub.publish([1, 2])
            assert _wait(lambda: state.messages + state.bad_messages >= 126)
        finally:
            sub.stop()
    snap = state.snapshot(bins=20)
    assert state.frames == 121 and state.bad_messages == 5
    assert snap["correct"] == 40 and snap["scored"] == 120 and snap["sent"] == 120 and snap["frame_loss"] == 0.0
    assert snap["accuracy"] == pytest.approx(40 / 121)
    assert len(snap["series"]["frame"]) == 20 and snap["series"]["frame"][-1] == 121
    assert snap["series"]["k"][0] == 16.0 and snap["latency_ms"]["p50"]["decode"] == 2.0
    assert snap["latency_ms"]["p50"]["encode"] is None
    json.dumps(snap, allow_nan=False)  # the page parses it with JSON.parse: no NaN


def test_publisher_drops_instead_of_blocking_past_its_budget():
    with EventPublisher(max_rate=20) as pub:
        t0 = time.perf_counter()
        for _ in range(500):
            pub.publish({"k": "status"})
        assert time.perf_counter() - t0 < 1.0
        assert pub.sent <= 22 and pub.dropped >= 478
    # a subscriber that never reads: the send queue fills and messages are dropped, not queued forever
    import zmq

    with EventPublisher(hwm=10, max_rate=1e9) as pub:
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 10)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(pub.endpoint)
        try:
            assert pub.wait_subscriber(5.0)
            t0 = time.perf_counter()
            for _ in range(20000):
                pub.publish({"k": "frame", "pad": "x" * 1000})
            assert time.perf_counter() - t0 < 5.0
            assert pub.dropped > 0
        finally:
            s.close(0)
            ctx.term()
    with pytest.raises(ValueError, match="max_rate"):
        EventPublisher(max_rate=float("nan"))
    with pytest.raises(ValueError, match="events endpoint"):
        EventPublisher("nonsense")


def test_evm_and_state_history_bounds():
    tx = np.array([1, 1j, -1, -1j], np.complex64)
    assert evm_percent(tx, tx) == 0.0
    assert abs(evm_percent(tx * 1.1, tx) - 10.0) < 1e-4
    with pytest.raises(ValueError, match="history"):
        MonitorState(history=0)


def test_link_events_time_every_stage_and_the_monitor_agrees_with_the_report(student):
    data = fmnist("test", 48, offset=300)
    state = MonitorState()
    with EventPublisher() as pub:
        sub = Subscriber(state, [pub.endpoint]).start()
        try:
            assert pub.wait_subscriber(5.0)
            with open_loopback(student, LinkConfig(batch_size=24, images_per_burst=12), snr_db=12.0,
                               cfo_hz=500.0, seed=4) as lb:
                ev = LinkEvents(pub, source="test", labels=data.labels, images=data.images,
                                sample_rate_hz=lb.tx.modem.config.sample_rate_hz,
                                channel_control=lb.channel.control_endpoint).attach(lb.tx, lb.rx)
                report = run_link(lb.tx, lb.rx, data.images, data.labels, progress=False)
                ev.finish(report.summary())
                assert _wait(lambda: state.end is not None)
                # the page's channel controls reach the simulator through its control socket
                chan = ChannelLink(state)
                try:
                    assert chan.apply({"snr_db": 3.5, "multipath": "epa"})["snr_db"] == 3.5
                    assert lb.channel.get()["multipath"] == "epa"
                    with pytest.raises(ValueError, match="multipath"):
                        chan.apply({"multipath": "moon"})
                    with pytest.raises(ValueError, match="unknown channel setting"):
                        chan.apply({"snr_db": 1, "seed": 3})
                    with pytest.raises(ValueError, match="finite"):
                        chan.apply({"cfo_hz": float("inf")})
                finally:
                    chan.stop()
        finally:
            sub.stop()
    lat = ev.latency_ms()
    assert all(lat["p50"][s] is not None and lat["p50"][s] >= 0 for s in STAGES)
    assert lat["p99"]["end_to_end"] >= lat["p50"]["end_to_end"] >= lat["p50"]["decode"]
    snap = state.snapshot()
    assert snap["frames"] == report.received and snap["correct"] == report.correct
    assert snap["accuracy"] == pytest.approx(report.accuracy)
    assert snap["end"]["received"] == report.received
    assert snap["constellation"]["tx"] is not None and snap["constellation"]["evm_pct"] > 0
    assert snap["spectrum"]["burst"] and len(snap["waterfall"]) >= 1 and snap["images"]
    for s in STAGES:  # the monitor's percentiles are of the same per-image figures
        assert snap["latency_ms"]["p50"][s] == pytest.approx(lat["p50"][s], rel=0.02, abs=0.01)


def test_monitor_process_serves_page_assets_state_and_refuses_bad_controls():
    with EventPublisher() as pub, MonitorProcess(pub.endpoint) as mon:
        assert mon.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(mon.url, timeout=5).read().decode()
        assert "/static/plotly.min.js" in page and "http" not in page.replace("http-equiv", "")
        js = urllib.request.urlopen(mon.url + "static/plotly.min.js", timeout=5).read()
        assert len(js) > 1_000_000
        urllib.request.urlopen(mon.url + "static/monitor.js", timeout=5).read()
        assert pub.wait_subscriber(10.0)
        pub.publish({"k": "frame", "seq": 0, "pred": 1, "label": 1, "sent": 1, "lost": 0})
        deadline = time.monotonic() + 10
        while True:
            state = json.loads(urllib.request.urlopen(mon.url + "api/state", timeout=5).read())
            if state["frames"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert state["frames"] == 1 and state["accuracy"] == 1.0
        req = urllib.request.Request(mon.url + "api/channel", data=b'{"snr_db": 3}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400 and "no channel simulator" in json.loads(err.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(mon.url + "static/..%2F..%2Fstate.py", timeout=5)
