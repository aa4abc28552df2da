"""A TLS-terminating proxy for tests: https outside, plain http to a server on 127.0.0.1.

It passes the bytes through untouched and adds no X-Forwarded-* header, so the app behind
it sees plain http while the browser sees https: a reverse proxy the app does not trust.
"""

import contextlib
import select
import socket
import ssl
import threading
from pathlib import Path

# How often an idle connection's thread looks whether the proxy is closing.
POLL_SECONDS = 0.5


class TlsProxy:
    """Listens with TLS on a free port of 127.0.0.1 and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, cert: Path, key: Path):
        self.upstream_port = upstream_port
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="tls-proxy", daemon=True)
        self._accepting.start()

    @property
    def base_url(self) -> str:
        """The https address browsers use."""
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting; open connections end within POLL_SECONDS."""
        self._closing.set()
        self._accepting.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # One thread moves both directions: an SSL socket must not be used by two at once.
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            try:
                client.settimeout(30)
                outside = stack.enter_context(self._tls.wrap_socket(client, server_side=True))
                inside = stack.enter_context(
                    socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
                )
                self._pump(outside, inside)
            except (OSError, ssl.SSLError):
                pass  # a browser that gave up, or a server that stopped: the connection ends

    def _pump(self, outside: ssl.SSLSocket, inside: socket.socket) -> None:
        partner = {outside: inside, inside: outside}
        while not self._closing.is_set():
            # Bytes already decrypted wait inside the SSL object, where select cannot see them.
            ready = [outside] if outside.pending() else []
            if not ready:
                ready, _writable, _errors = select.select(list(partner), [], [], POLL_SECONDS)
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                partner[source].sendall(data)
