"""Optional CURVE authentication and encryption for the control and feedback sockets (pyzmq / libzmq).

By default the channel's control socket and the transmitter's feedback socket bind to 127.0.0.1: only
processes on the same host can reach them, and whoever can reach them can change channel settings, stop
the channel or feed the transmitter false SNR reports (docs/design.md, "What is exposed"). To bind them
to another interface, give both ends the same shared secret in the environment variable
``SDR_TOSC_CURVE_SECRET`` (any string of at least 16 characters; or pass ``secret=`` in Python).

From the secret both ends derive (sha256, domain-separated) a CURVE server key pair and a client key
pair. The binding side becomes a CURVE server that accepts only the derived client key (a ZAP handler on
its context); the connecting side uses the derived keys. Traffic is then encrypted and a peer without
the secret cannot complete the handshake: its messages never reach the application. Binding a
non-loopback address without a secret logs a warning once per socket.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from typing import Any

log = logging.getLogger(__name__)

SECRET_ENV = "SDR_TOSC_CURVE_SECRET"
MIN_SECRET_CHARS = 16
_LOOPBACK = re.compile(r"^(tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\]):|ipc://|inproc://)")
_auth_lock = threading.Lock()
_authenticators: dict[int, Any] = {}


def shared_secret(secret: str | None = None) -> str | None:
    """``secret`` or ``$SDR_TOSC_CURVE_SECRET``; None when neither is set. Too short: ValueError."""
    s = secret if secret is not None else os.environ.get(SECRET_ENV) or None
    if s is not None and len(s) < MIN_SECRET_CHARS:
        raise ValueError(f"the CURVE shared secret ({SECRET_ENV}) must be at least {MIN_SECRET_CHARS} characters")
    return s


def derive_keys(secret: str) -> dict[str, bytes]:
    """Z85 CURVE keys ``server_public/server_secret/client_public/client_secret`` derived from ``secret``."""
    import zmq  # noqa: PLC0415
    from zmq.utils import z85  # noqa: PLC0415

    out = {}
    for role in ("server", "client"):
        sk = z85.encode(hashlib.sha256(f"sdr-tosc curve {role}\0{secret}".encode()).digest())
        out[f"{role}_secret"] = sk
        out[f"{role}_public"] = zmq.curve_public(sk)
    return out


def is_loopback(endpoint: str) -> bool:
    return bool(_LOOPBACK.match(endpoint))


class _AllowOne:
    """ZAP credentials provider: only the client key derived from the shared secret (Z85) is allowed."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.key


def secure_server(sock: Any, endpoint: str, secret: str | None = None, what: str = "socket") -> bool:
    """Make ``sock`` (not yet bound) a CURVE server when a secret is set; returns True if secured.

    Warns (once per call) when ``endpoint`` is not loopback and no secret is set.
    """
    import zmq  # noqa: PLC0415
    from zmq.auth.thread import ThreadAuthenticator  # noqa: PLC0415

    s = shared_secret(secret)
    if s is None:
        if not is_loopback(endpoint):
            log.warning("%s %s is reachable from other hosts without authentication: anyone who can connect "
                        "can use it; set %s on both ends to require CURVE", what, endpoint, SECRET_ENV)
        return False
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq has no CURVE support; rebuild pyzmq with libsodium or bind to 127.0.0.1")
    keys = derive_keys(s)
    ctx = sock.context
    with _auth_lock:
        if id(ctx) not in _authenticators:
            _stop_all_at_exit()
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve_callback("*", _AllowOne(keys["client_public"]))
            _authenticators[id(ctx)] = auth
    sock.curve_secretkey = keys["server_secret"]
    sock.curve_publickey = keys["server_public"]
    sock.curve_server = True
    return True


def secure_client(sock: Any, secret: str | None = None) -> bool:
    """Give ``sock`` (not yet connected) the derived CURVE client keys when a secret is set."""
    s = shared_secret(secret)
    if s is None:
        return False
    keys = derive_keys(s)
    sock.curve_serverkey = keys["server_public"]
    sock.curve_publickey = keys["client_public"]
    sock.curve_secretkey = keys["client_secret"]
    return True


_exit_hook = False


def _stop_all_at_exit() -> None:
    """Stop every ZAP thread when the interpreter shuts down, *before* it joins non-daemon threads (the
    authenticator's thread is one: left running, a process that never closed its secured socket would hang
    at exit). ``threading._register_atexit`` is the hook concurrent.futures uses for the same reason."""
    global _exit_hook
    if _exit_hook:
        return
    _exit_hook = True
    import threading  # noqa: PLC0415

    def stop_all() -> None:
        with _auth_lock:
            auths = list(_authenticators.values())
            _authenticators.clear()
        for a in auths:
            try:
                a.stop()
            except Exception:  # noqa: BLE001 - shutting down: nothing left to report to
                pass

    getattr(threading, "_register_atexit", __import__("atexit").register)(stop_all)


def release(ctx: Any) -> None:
    """Stop the ZAP handler started for ``ctx`` (call before ``ctx.term()``, which would wait for it)."""
    with _auth_lock:
        auth = _authenticators.pop(id(ctx), None)
    if auth is not None:
        auth.stop()
