"""Running the app with uvicorn: in the foreground (the CLI) or on a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ..errors import DeepGazeError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free port (see `socket_url`)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise DeepGazeError(f"cannot listen on {host}:{port} ({error}); choose another --host or --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(app, log_level: str = "info", access_log: bool = True) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5))


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
