"""Loopback runs with no hardware: TX radio -> ZMQ channel simulator (a separate process) -> RX radio.

:func:`open_loopback` starts the simulator on ephemeral loopback ports and opens the two zmq radios and the
SNR feedback channel; :func:`run_loopback` sends a set of images through it and returns a
:class:`~sdr_tosc.link.session.LinkReport` with the channel's true per-burst SNR attached to each frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..modem import Modem, ModemConfig
from .feedback import FeedbackReceiver, FeedbackSender
from .session import LinkConfig, LinkReport, SemanticReceiver, SemanticTransmitter, run_link


def channel_barrier(channel: Any, radio: Any, timeout_s: float = 10.0) -> None:
    """Wait until the channel simulator has taken in every sample ``radio`` has sent (a handshake).

    The simulator's timeline advances when the receiver asks for samples, not with wall-clock time, so a
    receiver that reads before the transmitter's bursts have crossed the socket would read past them
    (on a loaded machine that happens). Calling this after each ``tx`` batch orders the two.
    """
    channel.wait_received(radio.counters.tx_samples, timeout_s=timeout_s)


def feedback_pair(stack: contextlib.ExitStack, link: LinkConfig) -> tuple[FeedbackReceiver, FeedbackSender]:
    """An in-process SNR feedback link on an ephemeral loopback port (closed with ``stack``)."""
    fb_rx = stack.enter_context(FeedbackReceiver("tcp://127.0.0.1:0", bind=True, initial_snr_db=link.initial_snr_db,
                                                 alpha=link.feedback_alpha))
    return fb_rx, stack.enter_context(FeedbackSender(fb_rx.endpoint))


@dataclass
class Loopback:
    channel: Any  # sdr_tosc.channel.ChannelSimulator
    tx: SemanticTransmitter
    rx: SemanticReceiver


@contextlib.contextmanager
def open_loopback(
    student: Any,
    link: LinkConfig = LinkConfig(),
    modem_config: ModemConfig = ModemConfig(),
    feedback: bool = True,
    **channel_settings: Any,
) -> Iterator[Loopback]:
    """Context manager: a running channel simulator + semantic TX/RX over zmq radios (+ SNR feedback)."""
    with simulated_air(link, modem_config, feedback, channel_settings) as air:
        tx = SemanticTransmitter(student, air.modem, air.tx_radio, link, air.fb_rx, after_send=air.barrier)
        yield Loopback(air.channel, tx, SemanticReceiver(student, air.modem, air.rx_radio, link, air.fb_tx))


@dataclass
class SimulatedAir:
    """What a loopback's ends share: the channel process, a zmq radio at each end, the feedback pair."""

    channel: Any
    modem: Modem
    tx_radio: Any
    rx_radio: Any
    fb_rx: FeedbackReceiver | None
    fb_tx: FeedbackSender | None

    def barrier(self) -> None:
        channel_barrier(self.channel, self.tx_radio)


@contextlib.contextmanager
def simulated_air(link: LinkConfig, modem_config: ModemConfig, feedback: bool,
                  channel_settings: dict[str, Any]) -> Iterator[SimulatedAir]:
    """Start the channel simulator on ephemeral loopback ports, open a zmq radio at each end and (with
    ``feedback``) the SNR feedback pair; everything is closed on exit."""
    from ..channel import ChannelSimulator  # noqa: PLC0415
    from ..radio import open_radio  # noqa: PLC0415

    fs = modem_config.sample_rate_hz
    if channel_settings.setdefault("sample_rate_hz", fs) != fs:
        raise ValueError(f"channel sample_rate_hz={channel_settings['sample_rate_hz']} differs from the modem's {fs}")
    with contextlib.ExitStack() as stack:
        ch = stack.enter_context(ChannelSimulator(**channel_settings))
        txr = stack.enter_context(open_radio("zmq", tx_endpoint=ch.in_endpoint, sample_rate_hz=fs))
        rxr = stack.enter_context(open_radio("zmq", rx_endpoint=ch.out_endpoint, sample_rate_hz=fs))
        fb_rx, fb_tx = feedback_pair(stack, link) if feedback else (None, None)
        yield SimulatedAir(ch, Modem(modem_config), txr, rxr, fb_rx, fb_tx)


@contextlib.contextmanager
def open_radio_loopback(
    student: Any,
    radio: Any,
    link: LinkConfig = LinkConfig(pack_bursts=True),
    modem_config: ModemConfig = ModemConfig(),
    feedback: bool = True,
) -> Iterator[Loopback]:
    """One full-duplex radio whose TX is cabled (through an attenuator) to its own RX: both link ends on it.

    The radio is closed on exit. ``channel`` of the result is None (no simulator, no truth reports).
    """
    modem = Modem(modem_config)
    with contextlib.ExitStack() as stack:
        stack.enter_context(radio)
        radio.rx(1024)  # start RX streaming (and flush stale blocks) before the first burst goes out
        fb_rx, fb_tx = feedback_pair(stack, link) if feedback else (None, None)
        yield Loopback(None, SemanticTransmitter(student, modem, radio, link, fb_rx),
                       SemanticReceiver(student, modem, radio, link, fb_tx))


def run_loopback(
    student: Any,
    images: np.ndarray,
    labels: np.ndarray,
    link: LinkConfig = LinkConfig(),
    modem_config: ModemConfig = ModemConfig(),
    feedback: bool = True,
    progress: bool = True,
    overlap: bool = False,
    **channel_settings: Any,
) -> LinkReport:
    """Send ``images`` through a fresh loopback (``overlap``: TX of batch n+1 during RX of batch n, see
    :func:`~sdr_tosc.link.session.run_link`)."""
    with open_loopback(student, link, modem_config, feedback, **channel_settings) as lb:
        return run_link(lb.tx, lb.rx, images, labels, progress=progress, truth=lambda: lb.channel.truth(),
                        overlap=overlap)
