"""The virtual USRP's device: clock, settings, RX producer and TX scheduler over the channel simulator.

See :mod:`sdr_tosc.radio.virtual_usrp` for what it emulates; this module holds the device side that its
MultiUSRP and streamers call into (one :class:`Device` per ``MultiUSRP``, one thread each).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import Any

import numpy as np

from .virtual_usrp_air import (
    AirLink,
    _acquire_shared_channel,
    _release_shared_channel,
    _shared_lock,
    _shared_receivers,
    load_air,
    quantize,
)
from .virtual_usrp_types import (
    RXMetadata,
    RXMetadataErrorCode,
    StreamCMD,
    StreamMode,
    TimeSpec,
    TXAsyncMetadata,
    TXMetadata,
    TXMetadataEventCode,
)

log = logging.getLogger(__name__)

TX_MAX_GAIN_DB = 89.8
RX_MAX_GAIN_DB = 76.0
ADC_BITS = 12
MAX_NUM_SAMPS = 2040  # samples per packet, sc16 over USB 3 (what get_max_num_samps reports on a B2xx)
TICK_S = 0.004

class Device:
    """The device: its clock, settings, RX producer and TX scheduler (one thread), buffers and events."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.ppm = args["ppm"]
        # the transport's buffering, as UHD sizes it: num_recv_frames / num_send_frames packets
        self.recv_buffer_samples = args["num_recv_frames"] * MAX_NUM_SAMPS
        self.tx_buffer_samples = args["num_send_frames"] * MAX_NUM_SAMPS
        self.serial = args["serial"]
        self.lock = threading.Condition()
        self.rx_rate = self.tx_rate = 1e6
        self.rx_freq = self.tx_freq = 2.44e9
        self.rx_gain = 30.0
        self.tx_gain = 40.0
        self.rx_ant, self.tx_ant = "RX2", "TX/RX"
        self.rx_bw = self.tx_bw = 1e6
        self.rng = np.random.default_rng(args["seed"])
        # clock: device time = t_set + (mono - mono_set) * (1 + ppm 1e-6)
        self._t_set, self._mono_set = 0.0, time.monotonic()
        # RX state
        self.rx_cmd: StreamCMD | None = None
        self.rx_streaming = False
        self.rx_remaining = -1  # samples left of a num_samps command (-1: continuous)
        self.rx_more = False
        self.rx_mono_start = 0.0
        self.rx_pulled = 0  # channel samples taken since the stream started
        self.rx_produced = 0  # device samples produced since the stream started
        self.rx_t0 = 0.0  # device time of the first sample of the stream
        self.rx_queue: collections.deque = collections.deque()  # [kind, time_s, samples] packets
        self.rx_queued = 0
        self.rx_overflowing = False
        self.host_waiting = False  # a host thread is blocked in recv() for want of samples
        self.host_seen = 0.0  # when the host last called recv()
        self.rx_allowance = 0  # samples this device thread owes from running late (see _rx_step)
        self.commands: list[tuple[str, bool, float]] = []  # (mode, stream_now, time) of each stream command
        self.rx_resampler = None  # channel (true) clock -> device clock: the sampling-clock offset
        self.rx_rotator = None
        # TX state
        self.tx_queue: collections.deque = collections.deque()  # [mono_due, samples, sob, eob]
        self.tx_air_end_mono = 0.0  # when the last queued sample leaves the antenna (real time)
        self.tx_in_burst = False
        self.tx_dropping = False
        self.tx_rotator = None
        self.events: collections.deque = collections.deque()  # (mono_due, code, time_s)
        self.stats = {"rx_overflows": 0, "rx_dropped_samples": 0, "tx_underflows": 0, "tx_late": 0,
                      "tx_seq_errors": 0, "rx_late_commands": 0}
        # transport
        self._tx_link = None
        self._rx_link = None
        self._shared: str | None = None
        self._air: AirLink | None = None  # type=virtual,air=...: a guest node of the emulated Plutos' air
        self._air_mono0: float | None = None
        self._air_pulled = 0
        self.closed = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name=f"virtual-usrp-{self.serial}", daemon=True)
        self.thread.start()

    # -- clock ----------------------------------------------------------------------------------------
    def now(self) -> float:
        return self._t_set + (time.monotonic() - self._mono_set) * (1.0 + self.ppm * 1e-6)

    def mono_at(self, t_dev: float) -> float:
        return self._mono_set + (t_dev - self._t_set) / (1.0 + self.ppm * 1e-6)

    def set_time(self, t: float) -> None:
        with self.lock:
            self._t_set, self._mono_set = float(t), time.monotonic()

    # -- transport ------------------------------------------------------------------------------------
    def _air_offset_hz(self, freq: float) -> float:
        """On the air: the air's centre frequency minus this device's tuning (the two-port channel: 0)."""
        return self._air.center_freq_hz - freq if self._air is not None else 0.0

    def _endpoints(self) -> tuple[str | None, str | None]:
        a = self.args
        if a["in"] or a["out"]:
            return a["in"], a["out"]
        if self._shared is None:
            ch = _acquire_shared_channel(a["link"], self.rx_rate, self.rx_freq, a)
            self._shared = a["link"]
            self._ch_endpoints = (ch.in_endpoint, ch.out_endpoint)
        return self._ch_endpoints

    def _link(self, direction: str):
        from .zmq import ZmqRadio

        attr = f"_{direction}_link"
        if self.args["air"] and getattr(self, attr) is None:
            if self._air is None:
                self._air = AirLink(load_air(self.args["air"], self.args["node"]))
            setattr(self, attr, self._air)
        if getattr(self, attr) is None:
            ep_in, ep_out = self._endpoints()
            ep = ep_in if direction == "tx" else ep_out
            if ep is None:
                raise RuntimeError(f"virtual USRP {self.serial}: no {'in' if direction == 'tx' else 'out'}= "
                                   f"channel endpoint in its device args, so it cannot "
                                   f"{'transmit' if direction == 'tx' else 'receive'}")
            kw = {"tx_endpoint": ep} if direction == "tx" else {"rx_endpoint": ep}
            setattr(self, attr, ZmqRadio(**kw, sample_rate_hz=self.rx_rate, center_freq_hz=self.rx_freq,
                                         check_full_scale=False, timeout_s=2.0, max_outstanding=1))
        return getattr(self, attr)

    def connect(self, direction: str) -> None:
        """Connect the transport when a streamer is made (a device without that endpoint connects never)."""
        a = self.args
        if a["air"]:
            self._link(direction).check_rate(self.rx_rate if direction == "rx" else self.tx_rate, direction.upper())
            if self._air_mono0 is None:  # from now on the device thread reads this node's air in real time,
                with self.lock:  # which tells the air it is there; the first burst waits for the air to take it
                    self._air_mono0, self._air_pulled = time.monotonic(), 0
                    self.lock.notify_all()
                self._air.join()
        elif a["in" if direction == "tx" else "out"] or not (a["in"] or a["out"]):
            link = self._link(direction)
            if direction == "rx" and self._shared is not None:
                link.rx(1)  # the simulator it just started answers its first request slowly: not in a paced read

    def _claim_receiver(self) -> None:
        """One receiver per channel: the simulator's timeline advances with what its receiver reads, so
        a second device reading the same channel would take half of the samples each."""
        if self._shared is None:
            return
        with _shared_lock:
            other = _shared_receivers.get(self._shared)
            if other is not None and other is not self and not other.closed:
                raise RuntimeError(f"virtual USRP {self.serial}: device {other.serial} already receives on the "
                                   f"channel link={self._shared!r}; give each receiver its own link= (or its own "
                                   "channel simulator with in=/out=)")
            _shared_receivers[self._shared] = self

    # -- RX -------------------------------------------------------------------------------------------
    def issue(self, cmd: StreamCMD) -> None:
        with self.lock:
            mode = cmd.mode
            self.commands.append((mode.name, bool(cmd.stream_now), cmd.time_spec.get_real_secs()))
            if mode is StreamMode.stop_cont:
                self.rx_streaming = False
                self.rx_cmd = None
                self.lock.notify_all()
                return
            now = self.now()
            if not cmd.stream_now and cmd.time_spec.get_real_secs() < now:
                self.stats["rx_late_commands"] += 1
                self.rx_queue.append(["late", now, None])
                self.lock.notify_all()
                return
            t0 = now if cmd.stream_now else cmd.time_spec.get_real_secs()
            if self.rx_streaming and self.rx_more:  # a chained num_samps_and_more continues the stream
                self.rx_remaining = int(cmd.num_samps)
                self.rx_more = mode is StreamMode.num_more
                return
            self._claim_receiver()
            self.rx_cmd = cmd
            self.rx_streaming = True
            self.rx_remaining = -1 if mode is StreamMode.start_cont else int(cmd.num_samps)
            self.rx_more = mode is StreamMode.num_more
            self.rx_t0 = t0
            self.rx_mono_start = self.mono_at(t0)
            self.rx_pulled = self.rx_produced = 0
            from .emulator.air import StreamResampler  # the emulated Plutos' continuous resampler

            self.rx_resampler = StreamResampler(1.0 + self.ppm * 1e-6) if self.ppm else None
            from ..channel.impairments import PhaseRotator

            if self._air is not None:
                self._air.check_rate(self.rx_rate, "RX")
            self.rx_rotator = PhaseRotator(self._air_offset_hz(self.rx_freq) - self.ppm * 1e-6 * self.rx_freq,
                                           self.rx_rate)

    def _rx_step(self) -> None:
        with self.lock:
            if self._air_mono0 is not None:  # on the air: unheard samples pass while not streaming
                idle = int((time.monotonic() - self._air_mono0) * self._air.sample_rate_hz) - self._air_pulled
                self._air_pulled += idle
            if self._air_mono0 is not None and idle > 0 and (not self.rx_streaming or time.monotonic() < self.rx_mono_start):
                self._air.discard(idle)
            if not self.rx_streaming or time.monotonic() < self.rx_mono_start:
                return
            fs = self.rx_rate
            now = time.monotonic()
            due = int((now - self.rx_mono_start) * fs) - self.rx_pulled
            # This thread itself ran late (a busy machine): the samples it owes would have reached a host
            # that kept calling recv() one by one, so they may exceed the buffer while it catches up.
            # A host that stopped calling recv for longer than the buffer lasts gets no such allowance.
            buffer_s = self.recv_buffer_samples / fs
            if now - self.host_seen < buffer_s:
                self.rx_allowance = max(0, due - int(2 * TICK_S * fs))
        if due <= 0:
            return
        link = self._link("rx")
        while due > 0:
            n = min(due, 8192)
            x = link.rx(n)
            due -= n
            with self.lock:
                if not self.rx_streaming:
                    return
                self.rx_pulled += n
                y = self.rx_resampler(x) if self.rx_resampler is not None else x
                y = self.rx_rotator(y)
                g = np.float32(10.0 ** (self.rx_gain / 20.0))
                y = y * g
                sigma = np.float32(math.sqrt(10.0 ** (self.args["noise_floor_dbfs"] / 10.0) / 2.0))
                y += (self.rng.standard_normal(2 * y.size, dtype=np.float32) * sigma).view(np.complex64)
                y = quantize(y, ADC_BITS)
                if self.rx_remaining >= 0:
                    y = y[: self.rx_remaining]
                t = self.rx_t0 + self.rx_produced / fs
                self.rx_produced += y.size
                done = False
                if self.rx_remaining >= 0:
                    self.rx_remaining -= y.size
                    done = self.rx_remaining == 0
                self._deliver(y, t, end_of_burst=done and not self.rx_more)
                if done:
                    if self.rx_more:  # the host did not chain the next command in time
                        self.rx_queue.append(["broken_chain", t, None])
                    self.rx_streaming = False
                    self.lock.notify_all()
                    return

    def _deliver(self, y: np.ndarray, t: float, end_of_burst: bool) -> None:
        room = self.recv_buffer_samples - self.rx_queued + self.rx_allowance
        if self.host_waiting:  # the host drains packets as they come: this block would not pile up
            room = max(room, y.size)
        self.rx_allowance = max(0, self.rx_allowance - y.size)
        if y.size > room:  # the host did not keep up: the device drops what does not fit
            if not self.rx_overflowing:
                self.rx_queue.append(["overflow", t, None])
                self.stats["rx_overflows"] += 1
                self.rx_overflowing = True
            self.stats["rx_dropped_samples"] += y.size - max(room, 0)
            y = y[: max(room, 0)]
            end_of_burst = False
        elif self.rx_overflowing and room > self.recv_buffer_samples // 2:
            self.rx_overflowing = False
        if y.size:
            self.rx_queue.append(["data", t, y, end_of_burst])
            self.rx_queued += y.size
        self.lock.notify_all()

    def _wait(self, deadline: float) -> bool:
        """Wait for the device thread (host blocked in recv); False once ``deadline`` has passed."""
        self._check_alive()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.host_waiting = True
        try:
            self.lock.wait(min(left, 0.05))
        finally:
            self.host_waiting = False
        return True

    def recv(self, buf: np.ndarray, md: RXMetadata, timeout: float, one_packet: bool = False) -> int:
        """UHD's recv: fill ``buf`` with consecutive samples, waiting up to ``timeout`` for them; stop early
        at an end of burst, a gap in time or an error (which the next call reports)."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self.lock:
            self.host_seen = time.monotonic()
            while not self.rx_queue:
                if not self._wait(deadline):
                    md._set(RXMetadataErrorCode.timeout)
                    return 0
            head = self.rx_queue[0]
            kind = head[0]
            if kind != "data":
                self.rx_queue.popleft()
                code = {"overflow": RXMetadataErrorCode.overflow, "late": RXMetadataErrorCode.late,
                        "broken_chain": RXMetadataErrorCode.broken_chain}[kind]
                md._set(code, time_spec=TimeSpec(head[1]))
                return 0
            fs = self.rx_rate
            want = buf.shape[1]
            got = 0
            t_first = head[1]
            eob = False
            while got < want and not eob:
                if not self.rx_queue:
                    if one_packet or not self._wait(deadline):
                        break
                    continue
                if self.rx_queue[0][0] != "data":
                    break  # an error: the next recv reports it
                k, t, y, end = self.rx_queue[0]
                if abs(t - (t_first + got / fs)) > 0.5 / fs:
                    break  # a jump in time: the next recv starts at the new time
                take = min(y.size, want - got)
                buf[0, got:got + take] = y[:take]
                got += take
                self.rx_queued -= take
                if take == y.size:
                    self.rx_queue.popleft()
                    eob = end
                else:
                    self.rx_queue[0] = [k, t + take / fs, y[take:], end]
            md._set(RXMetadataErrorCode.none if got == want or eob or self.rx_queue else RXMetadataErrorCode.timeout,
                    time_spec=TimeSpec(t_first), end_of_burst=eob)
            return got

    # -- TX -------------------------------------------------------------------------------------------
    def send(self, buf: np.ndarray, md: TXMetadata, timeout: float) -> int:
        fs = self.tx_rate
        n = buf.shape[1]
        x = np.ascontiguousarray(buf[0], dtype=np.complex64)
        with self.lock:
            self._check_alive()
            now_mono = time.monotonic()
            sob = bool(md.start_of_burst) or not self.tx_in_burst
            if sob:
                self.tx_dropping = False
                if md.has_time_spec:
                    t_air = md.time_spec.get_real_secs()
                    if t_air < self.now():  # late: the device drops the burst and says so
                        self.stats["tx_late"] += 1
                        self.events.append((now_mono, TXMetadataEventCode.time_error, t_air))
                        self.tx_dropping = True
                        self.tx_in_burst = not md.end_of_burst
                        self.lock.notify_all()
                        return n
                    due = self.mono_at(t_air)
                else:
                    due = max(now_mono, self.tx_air_end_mono)
            else:
                if self.tx_dropping:
                    self.tx_in_burst = not md.end_of_burst
                    return n
                due = self.tx_air_end_mono
                if due < now_mono:  # the previous chunk ran out before this one arrived
                    self.stats["tx_underflows"] += 1
                    self.events.append((now_mono, TXMetadataEventCode.underflow, self.now()))
                    due = now_mono
            # flow control: accept what fits in the device buffer by the deadline
            buffer_s = self.tx_buffer_samples / fs
            limit = now_mono + max(0.0, float(timeout))
            accept = n if due + n / fs - buffer_s <= limit else max(0, int((limit - due + buffer_s) * fs))
            accept = min(n, accept)
            if accept:
                eob = bool(md.end_of_burst) and accept == n
                chunk = x[:accept]
                loss = self.args["tx_packet_loss"]
                if loss > 0:  # packets lost between host and device: a gap of zeros, EVENT_CODE_SEQ_ERROR
                    lost = np.flatnonzero(self.rng.random(-(-accept // MAX_NUM_SAMPS)) < loss)
                    if lost.size:
                        chunk = chunk.copy()
                        for k in lost.tolist():
                            chunk[k * MAX_NUM_SAMPS:(k + 1) * MAX_NUM_SAMPS] = 0
                            self.events.append((now_mono, TXMetadataEventCode.seq_error, self.now()))
                        self.stats["tx_seq_errors"] += int(lost.size)
                self.tx_queue.append([due, chunk, sob, eob])
                self.tx_air_end_mono = due + accept / fs
                self.tx_in_burst = not eob
                self.lock.notify_all()
            wait_until = min(limit, due + accept / fs - buffer_s)
        while time.monotonic() < wait_until:
            time.sleep(max(0.0, min(0.01, wait_until - time.monotonic())))  # the clock moves between the two reads
        return accept

    def _tx_step(self) -> None:
        from ..channel.impairments import PhaseRotator, resample_sco

        while True:
            with self.lock:
                if not self.tx_queue or self.tx_queue[0][0] > time.monotonic():
                    return
                due, x, sob, eob = self.tx_queue.popleft()
                # chunks of the same burst already queued go out together (they follow without a gap)
                parts = [x]
                while self.tx_queue and not self.tx_queue[0][2] and not eob:
                    _, x2, _, eob = self.tx_queue.popleft()
                    parts.append(x2)
                x = parts[0] if len(parts) == 1 else np.concatenate(parts)
                if sob or self.tx_rotator is None:
                    self.tx_rotator = PhaseRotator(self.ppm * 1e-6 * self.tx_freq - self._air_offset_hz(self.tx_freq),
                                                   self.tx_rate,
                                                   float(self.rng.uniform(0, 2 * np.pi)))
                gain_db = self.tx_gain - TX_MAX_GAIN_DB
                t_end = self.mono_to_dev(due) + x.size / self.tx_rate
                ppm_true = (1.0 / (1.0 + self.ppm * 1e-6) - 1.0) * 1e6
                y = quantize(x, 16)  # the DAC clips at full scale
                y = self.tx_rotator(y)
                y = resample_sco(y, ppm_true) if self.ppm else y
            link = self._link("tx")
            link.tx_gain_db = gain_db
            link.tx(y, start_of_burst=sob, end_of_burst=eob)
            if eob:
                with self.lock:
                    self.events.append((self.mono_at(t_end), TXMetadataEventCode.burst_ack, t_end))
                    self.lock.notify_all()

    def mono_to_dev(self, mono: float) -> float:
        return self._t_set + (mono - self._mono_set) * (1.0 + self.ppm * 1e-6)

    def recv_async(self, md: TXAsyncMetadata, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self.lock:
            while True:
                if self.events and self.events[0][0] <= time.monotonic():
                    _, code, t = self.events.popleft()
                    md._set(code, TimeSpec(t))
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.02))

    # -- the device's thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed:
            try:
                self._tx_step()
                self._rx_step()
            except Exception as exc:  # noqa: BLE001 - reported to the host at its next call
                log.error("virtual USRP %s stopped: %s", self.serial, exc)
                with self.lock:
                    self.error = exc
                    self.lock.notify_all()
                return
            with self.lock:
                wake = TICK_S
                if self.tx_queue:
                    wake = min(wake, max(0.0, self.tx_queue[0][0] - time.monotonic()))
                if wake > 0:
                    self.lock.wait(wake)

    def _check_alive(self) -> None:
        if self.closed:
            raise RuntimeError(f"virtual USRP {self.serial} is closed")
        if self.error is not None:
            raise RuntimeError(f"virtual USRP {self.serial}: transport to the channel simulator failed: "
                               f"{self.error}")

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        for link in (self._tx_link, self._rx_link):
            if link is not None:
                link.close()
        self._tx_link = self._rx_link = self._air = None
        if self._shared is not None:
            with _shared_lock:
                if _shared_receivers.get(self._shared) is self:
                    del _shared_receivers[self._shared]
            _release_shared_channel(self._shared)
            self._shared = None


