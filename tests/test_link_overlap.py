"""run_link(overlap=True): TX of batch n+1 in a worker thread while batch n is received."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _student_fixtures import fmnist

from sdr_tosc.link import LinkConfig
from sdr_tosc.link.loopback import run_loopback
from sdr_tosc.link.session import FrameResult, SentFrame, run_link
from sdr_tosc.semantic.student import load_checkpoint
from sdr_tosc.zoo import default_student_path


class _Tx:
    """Sends instantly; remembers every seq sent and in which thread."""

    def __init__(self, config: LinkConfig):
        self.config = config
        self.sent: list[SentFrame] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def send(self, images: np.ndarray, first_index: int = 0) -> list[SentFrame]:
        self.threads.add(threading.current_thread().name)
        recs = [SentFrame(first_index + i, first_index + i, 8, 10.0, 100, first=i == 0) for i in range(len(images))]
        with self.lock:
            self.sent += recs
        return recs


class _Rx:
    """Delivers a frame for every seq sent so far; with ``ahead=2`` each read first waits until the transmitter
    has also sent the next batch, so that batch's frames arrive before run_link has registered it."""

    def __init__(self, tx: _Tx, n_images: int, ahead: int = 1):
        self.tx, self.n_images, self.ahead, self.delivered, self.reads = tx, n_images, ahead, 0, 0

    def receive(self, n_samples: int) -> list[FrameResult]:  # one read per batch (no slack)
        self.reads += 1
        want = min(self.n_images, (self.reads - 1 + self.ahead) * self.tx.config.batch_size)
        deadline = time.monotonic() + 5.0
        while len(self.tx.sent) < want and time.monotonic() < deadline:
            time.sleep(0.001)
        with self.tx.lock:
            new = self.tx.sent[self.delivered:]
            self.delivered = len(self.tx.sent)
        return [FrameResult(s.seq, s.index % 10, 10.0, 10.0, 0.0, 8, 0, 10.0) for s in new]

    def flush(self) -> list[FrameResult]:
        return []


@pytest.mark.parametrize("overlap", [False, True])
def test_frames_that_arrive_before_their_batch_is_registered_are_kept(overlap):
    n = 40
    images = np.zeros((n, 28, 28, 1), np.uint8)
    labels = np.arange(n) % 10
    tx = _Tx(LinkConfig(batch_size=8, rx_slack_samples=0))
    report = run_link(tx, _Rx(tx, n, ahead=2 if overlap else 1), images, labels, progress=False, overlap=overlap)
    assert report.received == n and report.frame_loss == 0.0 and report.accuracy == 1.0
    assert [f["index"] for f in report.frames] == list(range(n))
    worker = any(name.startswith("link-tx") for name in tx.threads)
    assert worker == overlap  # the overlapped run sends from its worker thread, the sequential one does not


def test_a_failing_send_stops_the_overlapped_run():
    class Broken(_Tx):
        def send(self, images, first_index=0):
            if first_index >= 16:
                raise RuntimeError("radio gone")
            return super().send(images, first_index)

    tx = Broken(LinkConfig(batch_size=8, rx_slack_samples=0))
    n = 40
    with pytest.raises(RuntimeError, match="radio gone"):
        run_link(tx, _Rx(tx, 16), np.zeros((n, 28, 28, 1), np.uint8), np.zeros(n, int), progress=False, overlap=True)


@pytest.mark.timeout(120)
def test_overlapped_loopback_loses_nothing_and_matches_the_local_decode():
    """Through the real channel process at 30 dB: every image arrives once, with the class the student gives
    without a radio (as the sequential loop's test in test_link.py)."""
    pytest.importorskip("torch")
    student = load_checkpoint(default_student_path())
    data = fmnist("test", 48, offset=200)
    x, y = data.images, data.labels
    report = run_loopback(student, x, y, LinkConfig(batch_size=8, initial_snr_db=30.0), feedback=False,
                          progress=False, overlap=True, snr_db=30.0, cfo_hz=3000.0, seed=5)
    assert report.received == len(x) and report.frame_loss == 0.0
    assert [f["index"] for f in report.frames] == list(range(len(x)))
    local = student.decode(student.encode(x, 30.0), 30.0).argmax(1)
    link = np.array([f["pred"] for f in report.frames])
    assert (link == local).mean() >= 0.9
