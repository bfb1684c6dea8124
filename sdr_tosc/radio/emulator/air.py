"""N emulated Plutos on one simulated air: the sample clock that paces them and their links.

:class:`EmulatedPlutos` starts the channel simulator as one process with ``--nodes N`` (one link core per
transmitter/receiver pair, see :mod:`sdr_tosc.channel.nodes`), one :class:`~.ad9363.PlutoModel` and one
iiod server per radio, and a clock thread. Every few milliseconds the clock thread

1. takes from each radio's DAC the samples its (crystal-offset) sample clock played since the last tick,
   a fixed lead ahead of wall time (the TX pipeline latency);
2. sends each transmitter's samples to every receiver's link core, resampled from the transmitter's
   sample clock to the receiver's (a continuous cubic interpolator: the sampling-clock offset) and shifted
   by the LO difference ``f_tx (1 + e_tx) - f_rx (1 + e_rx)`` (the channel's continuous-phase rotator);
   links whose LO difference is outside the receiver's band are not heard;
3. asks the channel for each receiver's air (the sum of its links plus its input-referred noise, path
   loss and TX attenuation applied by the link cores) and hands it to the radio's front end and DMA.

So a radio runs in real time at its own clock: a client reading too slowly loses blocks (overflow), a
client writing too slowly leaves gaps (underflow), and two radios see each other's crystal errors.

Guest nodes (``guests``, after the Plutos) are for radios in other processes, e.g. a virtual USRP with
``type=virtual,air=plutos.json``: the guest speaks the node protocol itself, on the air's true clock
(nominal rate ``AIR_RATE_HZ``, LO ``center_freq_hz``; it applies its own crystal error). A guest counts as
attached while its read requests keep coming; then each Pluto's TX reaches it (resampled to the true clock,
shifted by the Pluto's LO error, untimed: placed where the guest reads, after ``GUEST_SLACK_S`` of silence),
and its TX reaches each Pluto through the channel's own per-link ``cfo_hz``/``sco_ppm``. A Pluto at another
sample rate than the air's cannot share it with a guest: those links are muted and the error logged.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
import time
from typing import Any

import numpy as np

from ...channel import impairments as imp
from ...channel.nodes import FLAG_DISCARD, RX_ROUTE, TX_ROUTE
from ...channel.process import ChannelSimulator
from .. import zmq as wire
from .ad9363 import ADC_FS_DBM, ADC_NOISE_DBFS, RX_FULL_SCALE_CODES, TX_MAX_DBM, PlutoModel, thermal_noise_dbm
from .iiod import IiodServer
from .resample import StreamResampler

log = logging.getLogger(__name__)

AIR_RATE_HZ = 1e6  # the true-clock sample rate of guest nodes
GUEST_SLACK_S = 0.05  # silence before a Pluto's stream to a guest: jitter room for the guest's reads
MUTED_DB = 200.0

QUANT_NOISE_DBFS = 10 * math.log10(2 * (1 / RX_FULL_SCALE_CODES) ** 2 / 12)  # rounding of I and Q


def path_loss_for_snr(snr_db: float, noise_figure_db: float = 3.5) -> float:
    """Path loss at which a full-scale signal sent at 0 dB TX attenuation lands ``snr_db`` above the
    receiver's thermal noise at 1 Msps (high RX gain, where the ADC's noise does not count)."""
    return TX_MAX_DBM - thermal_noise_dbm(1e6, noise_figure_db) - snr_db


def link_snr_db(signal_dbfs: float, tx_gain_db: float, loss_db: float, rx_gain_db: float,
                sample_rate_hz: float, noise_figure_db: float = 3.5) -> float:
    """The emulated gain law: SNR at the receiver's ADC output of a signal of mean power ``signal_dbfs``
    (TX full-scale units) sent at ``tx_gain_db`` over ``loss_db``: received power over thermal noise
    (-174 dBm/Hz + NF) plus the ADC's noise and rounding referred back through the RX gain."""
    sig = signal_dbfs + tx_gain_db - loss_db
    th = thermal_noise_dbm(sample_rate_hz, noise_figure_db) - TX_MAX_DBM
    adc = 10 * math.log10(10 ** (ADC_NOISE_DBFS / 10) + 10 ** (QUANT_NOISE_DBFS / 10)) + ADC_FS_DBM - rx_gain_db - TX_MAX_DBM
    return sig - 10 * math.log10(10 ** (th / 10) + 10 ** (adc / 10))


class _Link:
    """Transmitter ``src`` -> receiver ``dst``: resampler, LO-offset rotator, timeline index."""

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst = src, dst
        self.resampler: StreamResampler | None = None
        self.rotator = imp.PhaseRotator(0.0, 1.0)
        self.idx = 0.0  # where the next sample lands on the receiver's timeline
        self.audible = True
        self.fresh = True


class _NodeChannel(ChannelSimulator):
    """The channel simulator process started with ``--nodes N``."""

    def __init__(self, nodes: int, **settings: Any) -> None:
        super().__init__(**settings)
        self.nodes = nodes

    def command(self) -> list[str]:
        return [*super().command(), "--nodes", str(self.nodes)]


class EmulatedPlutos:
    """``count`` emulated ADALM-Plutos linked through one channel simulator process::

        with EmulatedPlutos(2, ppm=[-18, 11], path_loss_db=60) as pl:
            tx = open_radio("pluto", uri=pl.uris[0]); rx = open_radio("pluto", uri=pl.uris[1])

    ``ppm``: crystal error per radio (default 0); ``path_loss_db`` between different radios,
    ``isolation_db`` from a radio's TX to its own RX; ``base_port``: iiod ports base_port, base_port+1 ...
    (0: free ports); ``lead_s``: how far ahead of wall time DAC samples are produced (TX latency);
    ``tick_s``: clock period.
    """

    def __init__(self, count: int = 2, *, ppm: list[float] | None = None, path_loss_db: float = 60.0,
                 isolation_db: float = 40.0, seed: int = 0, host: str = "127.0.0.1", base_port: int = 0,
                 noise_figure_db: float = 3.5, center_freq_hz: float = 2.44e9, tick_s: float = 0.004,
                 lead_s: float = 0.02, guests: int = 1) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 16:
            raise ValueError(f"count must be an int from 1 to 16 radios, got {count!r}")
        ppm = [0.0] * count if ppm is None else [float(p) for p in ppm]
        if len(ppm) != count:
            raise ValueError(f"give one ppm value per radio: {count} radios, {len(ppm)} values ({ppm})")
        for name, v, lo, hi in (("ppm", max(map(abs, ppm), default=0.0), 0, 100),
                                ("path_loss_db", path_loss_db, 0, 200), ("isolation_db", isolation_db, 0, 200),
                                ("noise_figure_db", noise_figure_db, 0, 30), ("tick_s", tick_s, 0.0005, 0.05),
                                ("lead_s", lead_s, 2 * tick_s, 1.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{name}={v!r} must be within [{lo:g}, {hi:g}]")
        if isinstance(guests, bool) or not isinstance(guests, int) or not 0 <= guests <= 8:
            raise ValueError(f"guests must be an int from 0 to 8 nodes, got {guests!r}")
        if not 0 <= base_port <= 65535 - count:
            raise ValueError(f"base_port={base_port} must leave room for {count} ports below 65536")
        self.count, self.ppm, self.seed = count, ppm, int(seed)
        self.path_loss_db, self.isolation_db = float(path_loss_db), float(isolation_db)
        self.host, self.base_port = host, int(base_port)
        self.tick_s, self.lead_s = float(tick_s), float(lead_s)
        self.guests, self.center_freq_hz = guests, float(center_freq_hz)
        self.guest_live = [False] * guests
        self.models = [PlutoModel(i, ppm=p, seed=seed, noise_figure_db=noise_figure_db, lo_hz=int(center_freq_hz))
                       for i, p in enumerate(ppm)]
        self.servers: list[IiodServer] = []
        self.channel: _NodeChannel | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.stats = {"ticks": 0, "max_lag_s": 0.0, "busy_s": 0.0, "wall_s": 0.0, "skipped_s": 0.0, "resyncs": 0,
                      "tx_s": 0.0, "channel_wait_s": 0.0}

    # -- life cycle ------------------------------------------------------------------------------------
    @property
    def uris(self) -> list[str]:
        return [s.uri for s in self.servers]

    @property
    def uri(self) -> str:
        """The first radio's URI (handy with ``count=1``)."""
        return self.servers[0].uri

    @property
    def model(self) -> PlutoModel:
        """The first radio's model."""
        return self.models[0]

    @property
    def channel_control(self) -> str | None:
        return self.channel.control_endpoint if self.channel else None

    def start(self, timeout_s: float = 30.0) -> EmulatedPlutos:
        try:
            self.channel = _NodeChannel(self.count + self.guests, snr_db=None, noise_dbfs=-300.0, gap_samples=0,
                                        gap_jitter_samples=0, seed=self.seed, sample_rate_hz=1e6,
                                        center_freq_hz=self.models[0].lo_hz(tx=False))
            self.channel.start()
            for i, m in enumerate(self.models):
                port = self.base_port + i if self.base_port else 0
                try:
                    self.servers.append(IiodServer((self.host, port), m).start())
                except OSError as exc:
                    raise OSError(f"cannot serve emulated Pluto {i} on {self.host}:{port}: {exc} "
                                  "(port in use? pick another --base-port, or 0 for free ports)") from None
            nodes = range(self.count + self.guests)
            for (s, d) in ((s, d) for s in nodes for d in nodes):
                loss = self.isolation_db if s == d else self.path_loss_db
                # a guest's own link says whether the air has taken it (muted: not yet; see _poll_guests)
                self.channel.set(link=[s, d], path_loss_db=MUTED_DB if s == d >= self.count else loss)
            self._thread = threading.Thread(target=self._run, name="pluto-air-clock", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout_s) or self._error is not None:
                raise RuntimeError(f"the emulated radios' clock did not start: {self._error}")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def error(self) -> BaseException | None:
        """Why the clock stopped (e.g. the channel process died), or None while it runs."""
        return self._error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for s in self.servers:
            s.stop()
        self.servers = []
        if self.channel is not None:
            self.channel.stop()
            self.channel = None

    def __enter__(self) -> EmulatedPlutos:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """What ``sdr-tosc emulate --json`` writes."""
        return {"uris": self.uris, "channel_control": self.channel_control, "ppm": self.ppm,
                "serials": [m.serial for m in self.models], "path_loss_db": self.path_loss_db,
                "isolation_db": self.isolation_db, "seed": self.seed,
                "air": {"in": self.channel.in_endpoint if self.channel else None,
                        "out": self.channel.out_endpoint if self.channel else None, "control": self.channel_control,
                        "nodes": self.count + self.guests,
                        "guest_nodes": list(range(self.count, self.count + self.guests)),
                        "sample_rate_hz": AIR_RATE_HZ, "center_freq_hz": self.center_freq_hz}}

    # -- the link budget, for checks ---------------------------------------------------------------------
    def snr_law_db(self, tx: int, rx: int, signal_dbfs: float = 0.0) -> float:
        """SNR the receiver ``rx``'s ADC output has for a signal of ``signal_dbfs`` (mean power, TX
        full-scale units) from ``tx`` at both radios' current gains: the emulated gain law."""
        mt, mr = self.models[tx], self.models[rx]
        loss = self.isolation_db if tx == rx else self.path_loss_db
        return link_snr_db(signal_dbfs, mt.tx_gain_db(), loss, mr.rx_gain_db(), mr.sample_rate_hz, mr.noise_figure_db)

    def adc_level_dbfs(self, tx: int, rx: int, signal_dbfs: float = 0.0) -> float:
        """Mean power at ``rx``'s ADC (dBFS of its 12-bit range) of a ``signal_dbfs`` signal from ``tx``."""
        mt, mr = self.models[tx], self.models[rx]
        loss = self.isolation_db if tx == rx else self.path_loss_db
        return signal_dbfs + mt.tx_gain_db() - loss + mr.rx_gain_db() + TX_MAX_DBM - ADC_FS_DBM

    # -- the clock ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        import zmq

        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        dealer = ctx.socket(zmq.DEALER)
        try:
            for s in (push, dealer):
                s.setsockopt(zmq.LINGER, 0)
            push.connect(self.channel.in_endpoint)
            dealer.connect(self.channel.out_endpoint)
            self._loop(push, dealer)
        except BaseException as exc:  # noqa: BLE001 - reported by start() or logged
            self._error = exc
            log.exception("emulated radios' clock stopped")
        finally:
            self._ready.set()
            push.close(0)
            dealer.close(0)

    def _loop(self, push, dealer) -> None:
        n = self.count
        nn = n + self.guests
        links = {(s, d): _Link(s, d) for s in range(n) for d in range(nn)}
        reads_seen = [0] * self.guests
        guest_poll = 0.0
        tx_frac = [0.0] * n
        rx_frac = [0.0] * n
        rx_idx = [0] * n  # samples each receiver has taken from the air
        t0 = time.monotonic()
        tx_t = rx_t = t0
        tx_hist = (t0, t0)
        seq = 0
        noise_set: list[float | None] = [None] * n
        self._ready.set()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                busy0 = time.perf_counter()
                lag = now - rx_t
                self.stats["max_lag_s"] = max(self.stats["max_lag_s"], lag - self.tick_s) if self.stats["ticks"] > 10 else 0.0
                if lag > 2.0:  # the host stalled for long: skip the lost time instead of racing to catch up
                    self.stats["skipped_s"] += lag - self.tick_s
                    rx_t = now - self.tick_s
                    tx_t = max(tx_t, now)
                rates = [m.true_rate_hz() for m in self.models] + [AIR_RATE_HZ] * self.guests
                if self.guests and now >= guest_poll:
                    guest_poll = now + 0.25
                    self._poll_guests(reads_seen, links, rates)
                for j, m in enumerate(self.models):
                    if m.changed:
                        with m.cond:
                            m.changed = False
                        nz = m.input_noise_dbfs()
                        if noise_set[j] is None or abs(nz - noise_set[j]) > 1e-6:
                            self.channel.set(link=[j, j], noise_dbfs=nz)
                            noise_set[j] = nz
                        for s in range(n):
                            self._retune(links[(s, j)], rates)
                            self._retune(links[(j, s)], rates)
                        for g in range(n, nn):
                            self._retune(links[(j, g)], rates)
                            self._guest_link(g, j, rates)
                # 1. DAC samples up to now + lead, to every receiver that listens (the others skip ahead).
                # Receivers then read only up to where the TX of two ticks ago reached: those messages are in
                # (TX and reads travel on different sockets; a busy host may deliver one tick late).
                rx_limit = min(now, tx_hist[0])
                tx_hist = (tx_hist[1], now + self.lead_s)
                listen = [m.wants_rx() for m in self.models] + list(self.guest_live)
                t_end = now + self.lead_s
                for i, m in enumerate(self.models):
                    want = (t_end - tx_t) * rates[i] + tx_frac[i]
                    k = int(want)
                    tx_frac[i] = want - k
                    if k <= 0:
                        continue
                    x = m.produce_tx(k, build=any(listen))
                    gain = m.tx_gain_db()
                    for j in range(nn):
                        ln = links[(i, j)]
                        ratio = rates[j] / rates[i]
                        if x is None or not ln.audible or not listen[j]:
                            ln.idx += k * ratio
                            ln.fresh = True
                            continue
                        sob = ln.fresh
                        if ln.fresh:
                            ln.resampler = StreamResampler(ratio) if ratio != 1.0 else None
                            ln.fresh = False
                        y = ln.resampler(x) if ln.resampler is not None else x.copy()
                        ln.rotator(y, out=y)
                        if j >= n:  # a guest: untimed, continuing where its stream left off
                            if sob:
                                y = np.concatenate([np.zeros(int(GUEST_SLACK_S * rates[j]), np.complex64), y])
                            hdr = wire.Header(wire.FLAG_SOB if sob else 0, seq, 0, rates[j], 0.0, gain, y.size)
                        else:
                            hdr = wire.Header(wire.FLAG_TIMED, seq, int(round(ln.idx)), rates[j], 0.0, gain, y.size)
                        seq += 1
                        push.send_multipart([TX_ROUTE.pack(i, j), wire.encode_message(y, hdr)], copy=False)
                        ln.idx += y.size if ln.resampler is not None else k
                tx_t = t_end
                t_tx = time.perf_counter()
                # 2. each receiver's air up to now (or the previous tick's TX end)
                asks = []
                for j in range(n):
                    want = (rx_limit - rx_t) * rates[j] + rx_frac[j]
                    k = int(want)
                    rx_frac[j] = want - k
                    if k <= 0:
                        continue
                    dealer.send_multipart([RX_ROUTE.pack(j, 0 if listen[j] else FLAG_DISCARD), struct.pack("<Q", k)])
                    asks.append((j, k, listen[j]))
                    rx_idx[j] += k
                rx_t = max(rx_t, rx_limit)
                t_wait = 0.0
                for j, k, heard in asks:
                    w0 = time.perf_counter()
                    if not dealer.poll(5000):
                        raise TimeoutError("the channel simulator did not answer within 5 s")
                    reply = dealer.recv(copy=False)
                    t_wait += time.perf_counter() - w0
                    if heard:
                        _, air = wire.decode_message(reply.buffer, "channel reply")
                        self.models[j].deliver_rx(air, k)
                self.stats["tx_s"] += t_tx - busy0
                self.stats["channel_wait_s"] += t_wait
                for (_s, d), ln in links.items():  # keep every link's timeline index on the receiver's clock
                    if d >= n:
                        continue
                    expect = rx_idx[d] + (tx_t - rx_t) * rates[d]
                    if abs(ln.idx - expect) > 0.25 * self.lead_s * rates[d]:
                        ln.idx = expect
                        ln.fresh = True
                        self.stats["resyncs"] = self.stats.get("resyncs", 0) + 1
                busy = time.perf_counter() - busy0
                self.stats["busy_s"] += busy
                self.stats["ticks"] += 1
                self.stats["wall_s"] = time.monotonic() - t0
            except (ValueError, ArithmeticError, IndexError) as exc:  # keep the radios alive; say it once
                self.stats["errors"] = self.stats.get("errors", 0) + 1
                if self.stats["errors"] == 1:
                    log.exception("emulated radios: a clock tick failed (%s); links restarted", exc)
                for ln in links.values():
                    ln.fresh = True
                busy = 0.0
            self._stop.wait(max(0.0, self.tick_s - busy))

    def _rate_ok(self, m: PlutoModel) -> bool:
        ok = abs(m.sample_rate_hz - AIR_RATE_HZ) < 1.0
        if not ok and not getattr(m, "_air_rate_said", False):
            m._air_rate_said = True
            log.error("emulated Pluto %d runs at %.0f sps but the air's guests (e.g. a virtual USRP) run at %.0f: "
                      "the sample rates of the radios on one air must match; their links are muted",
                      m.index, m.sample_rate_hz, AIR_RATE_HZ)
        return ok

    def _poll_guests(self, reads_seen: list[int], links: dict, rates: list[float]) -> None:
        """A guest is attached while its read requests keep coming (the channel counts them per node)."""
        try:
            reads = self.channel.stats()["node_reads"]
        except (RuntimeError, OSError, KeyError, TimeoutError) as exc:
            log.warning("emulated radios: cannot poll the channel for guests: %s", exc)
            return
        for k in range(self.guests):
            g = self.count + k
            live = reads[g] != reads_seen[k]
            reads_seen[k] = reads[g]
            if live != self.guest_live[k]:
                log.info("guest node %d %s the air", g, "joined" if live else "left")
                self.guest_live[k] = live
                for j in range(self.count):
                    links[(j, g)].fresh = True
                    self._retune(links[(j, g)], rates)
                    self._guest_link(g, j, rates)
                self.channel.set(link=[g, g], path_loss_db=self.isolation_db if live else MUTED_DB)  # the guest waits for this

    def _guest_link(self, g: int, j: int, rates: list[float]) -> None:
        """The channel link guest ``g`` -> Pluto ``j``: the guest sends on the true clock at the air's centre
        frequency, so the link shifts by the Pluto's LO error and resamples to its clock."""
        mr = self.models[j]
        cfo = self.center_freq_hz - mr.lo_hz(tx=False)
        ok = self.guest_live[g - self.count] and self._rate_ok(mr) and abs(cfo) < 0.5 * rates[j]
        self.channel.set(link=[g, j], cfo_hz=cfo if ok else 0.0,
                         sco_ppm=(rates[j] / AIR_RATE_HZ - 1.0) * 1e6 if ok else 0.0,
                         path_loss_db=self.path_loss_db if ok else MUTED_DB)

    def _retune(self, ln: _Link, rates: list[float]) -> None:
        mt = self.models[ln.src]
        guest = ln.dst >= self.count
        cfo = mt.lo_hz(tx=True) - (self.center_freq_hz if guest else self.models[ln.dst].lo_hz(tx=False))
        fs = rates[ln.dst]
        ln.audible = abs(cfo) < 0.5 * fs and (not guest or self._rate_ok(mt))
        if ln.rotator.sample_rate_hz != fs:
            ln.rotator = imp.PhaseRotator(0.0, fs, ln.rotator.phase_rad)
        ln.rotator.cfo_hz = cfo if ln.audible else 0.0  # the phase stays continuous
        ratio = fs / rates[ln.src]
        if ln.resampler is not None and ln.resampler.ratio != ratio or ln.resampler is None and ratio != 1.0:
            ln.fresh = True  # a new clock ratio (a rate or xo_correction change): start a new resampler


@contextlib.contextmanager
def running(count: int = 2, **kwargs: Any):
    """``with running(2, ppm=[-18, 11]) as plutos:`` -- start, yield, stop."""
    p = EmulatedPlutos(count, **kwargs).start()
    try:
        yield p
    finally:
        p.stop()


def write_ready_file(path: Any, plutos: EmulatedPlutos) -> None:
    """The ``--json`` file: ``{"uris": [...], "channel_control": "tcp://..."}`` and the set-up, atomically."""
    from ...fileio import atomic_write_json

    atomic_write_json(path, plutos.describe())
