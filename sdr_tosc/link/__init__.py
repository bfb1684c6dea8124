"""The semantic link: student + modem + radio, SNR feedback, loopback and two-radio runs."""

from .feedback import FeedbackReceiver, FeedbackReport, FeedbackSender
from .session import (
    KIND_SEMANTIC,
    FrameResult,
    LinkConfig,
    LinkReport,
    SemanticReceiver,
    SemanticTransmitter,
    decoder_snr_db,
    run_link,
)

__all__ = [
    "KIND_SEMANTIC", "FeedbackReceiver", "FeedbackReport", "FeedbackSender", "FrameResult", "LinkConfig",
    "LinkReport", "SemanticReceiver", "SemanticTransmitter", "decoder_snr_db", "run_link",
]
