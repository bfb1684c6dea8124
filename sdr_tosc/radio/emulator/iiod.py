"""libiio's network protocol (iiod, as spoken by libiio 0.24) on a TCP port, in front of a device model.

The server only speaks the protocol; the model (:class:`~sdr_tosc.radio.emulator.ad9363.PlutoModel`)
owns attributes, buffers and timing. Text commands, one per line; replies are a decimal integer line
(negative errno on error): ``VERSION``, ``ZPRINT`` (answered -22 so the client falls back to) ``PRINT``,
``TIMEOUT``, ``OPEN``, ``CLOSE``, ``READ``, ``WRITE``, ``READBUF``, ``WRITEBUF``, ``SET dev BUFFERS_COUNT``,
``GETTRIG``, ``SETTRIG``, ``EXIT``. ``READBUF``/``WRITEBUF`` may block (the model paces them to its
sample clock); one thread serves each client connection.
"""

from __future__ import annotations

import errno
import logging
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

log = logging.getLogger(__name__)

_DTD = (
    '<!DOCTYPE context [<!ELEMENT context (device | context-attribute)*><!ELEMENT context-attribute EMPTY>'
    "<!ELEMENT device (channel | attribute | debug-attribute | buffer-attribute)*>"
    "<!ELEMENT channel (scan-element?, attribute*)><!ELEMENT attribute EMPTY><!ELEMENT scan-element EMPTY>"
    "<!ELEMENT debug-attribute EMPTY><!ELEMENT buffer-attribute EMPTY>"
    "<!ATTLIST context name CDATA #REQUIRED description CDATA #IMPLIED>"
    "<!ATTLIST context-attribute name CDATA #REQUIRED value CDATA #REQUIRED>"
    "<!ATTLIST device id CDATA #REQUIRED name CDATA #IMPLIED>"
    "<!ATTLIST channel id CDATA #REQUIRED type (input|output) #REQUIRED name CDATA #IMPLIED>"
    "<!ATTLIST scan-element index CDATA #REQUIRED format CDATA #REQUIRED scale CDATA #IMPLIED>"
    "<!ATTLIST attribute name CDATA #REQUIRED filename CDATA #IMPLIED value CDATA #IMPLIED>"
    "<!ATTLIST debug-attribute name CDATA #REQUIRED value CDATA #IMPLIED>"
    "<!ATTLIST buffer-attribute name CDATA #REQUIRED value CDATA #IMPLIED>]>"
)


@dataclass
class Chan:
    id: str
    output: bool
    attrs: dict[str, str]
    name: str | None = None
    scan: tuple[int, str] | None = None  # (index, format)
    shared: frozenset[str] = frozenset()  # attributes in a file shared by all channels of the type


def _base(cid: str) -> str:
    return cid.rstrip("0123456789")


@dataclass
class Dev:
    id: str
    name: str
    channels: list[Chan]
    attrs: dict[str, str] = field(default_factory=dict)
    debug: dict[str, str] = field(default_factory=dict)
    buffer_attrs: dict[str, str] = field(default_factory=dict)

    def chan(self, cid: str, output: bool) -> Chan | None:
        for c in self.channels:
            if c.id == cid and c.output == output:
                return c
        return None


def context_xml(devices: list[Dev], description: str, ctx_attrs: dict[str, str]) -> str:
    """The context description as libiio 0.24's iiod sends it for ``PRINT``."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', _DTD,
             f'<context name="network" description={quoteattr(description)} >']
    parts += [f"<context-attribute name={quoteattr(k)} value={quoteattr(v)} />" for k, v in ctx_attrs.items()]
    for d in devices:
        parts.append(f"<device id={quoteattr(d.id)} name={quoteattr(d.name)} >")
        for c in d.channels:
            kind = "output" if c.output else "input"
            name = f" name={quoteattr(c.name)}" if c.name else ""
            parts.append(f"<channel id={quoteattr(c.id)}{name} type=\"{kind}\" >")
            if c.scan:
                parts.append(f'<scan-element index="{c.scan[0]}" format="{c.scan[1]}" scale="1.000000" />')
            prefix = "out" if c.output else "in"
            for a in c.attrs:
                label = f"{c.id}_{c.name}" if c.name else c.id  # e.g. out_altvoltage1_TX_LO_frequency
                if a in c.shared:
                    label = _base(c.id)  # e.g. in_voltage_rf_bandwidth, as the kernel names shared files
                fn = f"{prefix}_{label}_{a}" if c.id != "out" else f"in_out_{a}"
                parts.append(f"<attribute name={quoteattr(a)} filename={quoteattr(fn)} />")
            parts.append("</channel>")
        parts += [f"<attribute name={quoteattr(a)} />" for a in d.attrs]
        parts += [f"<debug-attribute name={quoteattr(a)} />" for a in d.debug]
        parts += [f"<buffer-attribute name={quoteattr(a)} />" for a in d.buffer_attrs]
        parts.append("</device>")
    parts.append("</context>")
    return "".join(parts)


class _Handler(socketserver.StreamRequestHandler):
    """One client connection (libiio opens one for the context and one per opened device)."""

    server: IiodServer

    def handle(self) -> None:
        self.opened: set[str] = set()
        try:
            self._serve()
        finally:  # like iiod: a client that goes away releases the buffers it opened
            for dev in self.opened:
                self.server.model.close_dev(dev)

    def _serve(self) -> None:
        model = self.server.model
        while True:
            try:
                line = self.rfile.readline(4096)
            except (ConnectionError, OSError):
                return
            if not line:
                return
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            words = text.split()
            cmd = words[0].upper()
            try:
                if cmd == "EXIT":
                    return
                self._dispatch(model, cmd, words)
            except (ConnectionError, BrokenPipeError):
                return

    def _reply(self, value: int | str, payload: bytes | None = None) -> None:
        data = f"{value}\n".encode()
        if payload is not None:
            data += payload
        self.wfile.write(data)
        self.wfile.flush()

    def _dispatch(self, model: Any, cmd: str, w: list[str]) -> None:
        devs = model.devices
        if cmd == "VERSION":
            self.wfile.write(b"0.24.sdrtosc\n")
            self.wfile.flush()
        elif cmd == "ZPRINT":
            self._reply(-errno.EINVAL)
        elif cmd == "PRINT":
            xml = self.server.xml.encode()
            self._reply(len(xml), xml + b"\n")
        elif cmd == "HELP":
            self._reply(0)
        elif cmd == "TIMEOUT":
            self._reply(0)
        elif cmd in ("GETTRIG", "SETTRIG"):
            self._reply(-errno.ENOENT if len(w) > 1 and w[1] in devs else -errno.ENODEV)
        elif cmd == "SET" and len(w) == 4 and w[2].upper() == "BUFFERS_COUNT":
            if w[1] not in devs or not w[3].isdigit() or not 1 <= int(w[3]) <= 64:
                self._reply(-errno.EINVAL)
            else:
                model.set_kernel_buffers(w[1], int(w[3]))
                self._reply(0)
        elif cmd == "OPEN" and len(w) >= 4:
            if not model.can_open(w[1]):
                self._reply(-errno.ENODEV)
                return
            try:
                model.open_dev(w[1], int(w[2]), int(w[3], 16), len(w) > 4 and w[4].upper() == "CYCLIC")
            except ValueError:
                self._reply(-errno.EINVAL)
                return
            except BlockingIOError:
                self._reply(-errno.EBUSY)
                return
            self.opened.add(w[1])
            self._reply(0)
        elif cmd == "CLOSE" and len(w) == 2:
            model.close_dev(w[1])
            self.opened.discard(w[1])
            self._reply(0)
        elif cmd == "READ":
            self._read_attr(model, w)
        elif cmd == "WRITE":
            self._write_attr(model, w)
        elif cmd == "READBUF" and len(w) == 3:
            self._readbuf(model, w[1], int(w[2]))
        elif cmd == "WRITEBUF" and len(w) == 3:
            self._writebuf(model, w[1], int(w[2]))
        else:
            log.debug("unsupported iiod command %r", w)
            self._reply(-errno.EINVAL)

    @staticmethod
    def _attr_target(w: list[str]) -> tuple[str, str, str | None, str, list[str]] | None:
        """Parse ``dev [INPUT|OUTPUT chn | DEBUG | BUFFER] attr [size]`` -> (dev, kind, chn, attr, rest)."""
        if len(w) < 3:
            return None
        dev = w[1]
        kind = w[2].upper()
        if kind in ("INPUT", "OUTPUT"):
            return (dev, kind, w[3], w[4], w[5:]) if len(w) >= 5 else None
        if kind in ("DEBUG", "BUFFER"):
            return (dev, kind, None, w[3], w[4:]) if len(w) >= 4 else None
        return dev, "DEVICE", None, w[2], w[3:]

    def _read_attr(self, model: Any, w: list[str]) -> None:
        t = self._attr_target(w)
        if t is None or t[0] not in model.devices:
            self._reply(-errno.ENODEV)
            return
        try:
            value = model.read_attr(t[0], t[1], t[2], t[3]).encode()
        except KeyError:
            self._reply(-errno.ENOENT)
            return
        self._reply(len(value), value + b"\n")

    def _write_attr(self, model: Any, w: list[str]) -> None:
        t = self._attr_target(w)
        if t is None or not t[4] or not t[4][0].isdigit():
            self._reply(-errno.EINVAL)
            return
        size = int(t[4][0])
        data = self.rfile.read(size)
        if t[0] not in model.devices:
            self._reply(-errno.ENODEV)
            return
        value = data.split(b"\0", 1)[0].decode("ascii", "replace").strip()
        try:
            model.write_attr(t[0], t[1], t[2], t[3], value)
        except KeyError:
            self._reply(-errno.ENOENT)
            return
        except PermissionError:
            self._reply(-errno.EPERM)
            return
        except ValueError:
            self._reply(-errno.EINVAL)
            return
        self._reply(size)

    def _readbuf(self, model: Any, dev: str, nbytes: int) -> None:
        try:
            mask, block = model.read_block(dev, nbytes)  # blocks until the DMA filled one buffer
        except OSError as exc:
            self._reply(-(exc.errno or errno.EIO))
            return
        self._reply(len(block), f"{mask:08x}".encode() + b"\n" + block)

    def _writebuf(self, model: Any, dev: str, nbytes: int) -> None:
        if not model.can_write(dev):
            self._reply(-errno.EBADF)
            return
        self._reply(0)
        data = self.rfile.read(nbytes)
        if len(data) != nbytes:
            return
        try:
            model.write_block(dev, data)  # blocks while the kernel's TX queue is full
        except OSError as exc:
            self._reply(-(exc.errno or errno.EIO))
            return
        self._reply(nbytes)


class IiodServer(socketserver.ThreadingTCPServer):
    """Serve ``model`` on ``(host, port)`` (port 0: a free one); :meth:`start` runs it in a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], model: Any) -> None:
        self.model = model
        self.xml = model.context_xml()
        self._thread: threading.Thread | None = None
        super().__init__(addr, _Handler)

    @property
    def uri(self) -> str:
        """libiio URI, e.g. ``ip:127.0.0.1:40123`` (libiio 0.24 accepts a port after the host)."""
        host, port = self.server_address[:2]
        return f"ip:{host}:{port}"

    def start(self) -> IiodServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"iiod-{self.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()


