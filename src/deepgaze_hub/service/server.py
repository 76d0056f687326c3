"""Running the app with uvicorn: in the foreground (the CLI) or on a background thread.

Connections are served by `HeaderDeadlineH11Protocol`: uvicorn's h11 protocol plus a deadline
for the request line and headers, which uvicorn itself does not have (its keep-alive timeout only
covers a connection that sends nothing at all): a client that opens connections and sends a few
bytes of a request, then nothing, has them closed after ``header_timeout_s``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ConfigError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free port (see `socket_url`)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error}); choose another --host or --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; a connection whose request headers are not complete
    ``header_timeout_s`` seconds after it opened (or after its previous response) is closed."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()  # the request line or headers never completed


def protocol_with_header_deadline(header_timeout_s: float) -> type[HeaderDeadlineH11Protocol]:
    return type("HeaderDeadlineH11Protocol", (HeaderDeadlineH11Protocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_server(app, log_level: str = "info", access_log: bool = True) -> uvicorn.Server:
    """A uvicorn server for ``app``; the header deadline comes from the app's service settings."""
    service = getattr(getattr(app, "state", None), "service", None)
    header_timeout_s = HeaderDeadlineH11Protocol.header_timeout_s
    if service is not None:
        header_timeout_s = service.settings.header_timeout_s
    config = uvicorn.Config(
        app,
        http=protocol_with_header_deadline(header_timeout_s),
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """Serve an ASGI app on a background thread, for tests and notebooks.

    ``with BackgroundServer(app) as url:`` serves on 127.0.0.1 at a free port and stops on exit.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.sock = bind_socket(host, port)
        self.url = socket_url(self.sock)
        self.server = uvicorn_server(app, log_level=log_level, access_log=False)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.sock.close()
                raise RuntimeError("the service did not start; see the log above")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self.sock.close()
