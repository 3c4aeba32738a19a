"""A small TCP proxy on 127.0.0.1 that a test can cut and restore, to take a server away.

    with TcpProxy("127.0.0.1", firestore_port) as proxy:   # clients connect to proxy.address
        proxy.cut("blackhole")   # bytes stop flowing; new connections hang: deadlines must fire
        proxy.cut("reset")       # every connection is reset; new ones are reset at once
        proxy.restore()          # forward again (connections cut are gone: clients reconnect)
        proxy.hold_replies()     # requests go through, replies wait (a reply lost in transit,
                                 # once `cut("reset")` drops them)

It keeps its port for its whole life (a cut never closes the listener), so clients keep the
address they were built with. Threads only; nothing leaves the loopback interface.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Any

_POLL = 0.05  # seconds a pump waits for data before it looks at the proxy's state again


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self._lock = threading.Lock()
        self._state = "open"  # open | blackhole | reset
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self.accepted = 0
        self.refused = 0

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        self._drop_all()

    # -- cut and restore ----------------------------------------------------------------------

    def cut(self, mode: str = "reset") -> None:
        """`reset`: reset every connection now and each new one at once (a server that is down).
        `blackhole`: keep connections but stop all bytes, and accept new ones without ever
        connecting them through (a network partition: only a deadline ends a call)."""
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"unknown cut mode {mode!r}")
        with self._lock:
            self._state = mode
        if mode == "reset":
            self._drop_all()

    def hold_replies(self) -> None:
        """Forward what clients send, but hold back what the server answers: a request reaches
        the server and acts, and its client hears nothing (until a cut drops the connection,
        and with it the reply)."""
        with self._lock:
            self._state = "hold"

    def restore(self) -> None:
        """Forward again. Connections held during a blackhole are reset first: what they sent
        meanwhile is lost, as after a real partition, and their clients reconnect."""
        with self._lock:
            held = self._state == "blackhole"
            self._state = "open"
        if held:
            self._drop_all()

    # -- internals ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                state = self._state
            if state == "reset":
                self.refused += 1
                _reset(client)
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: socket.socket | None = None
        try:
            while True:  # a connection accepted during a blackhole waits, unconnected
                with self._lock:
                    state = self._state
                if self._stopping.is_set() or client.fileno() < 0:
                    return
                if state in ("open", "hold"):
                    break
                if state == "reset":
                    return
                self._stopping.wait(_POLL)
            upstream = socket.create_connection(self.target, timeout=5)
            self._track(upstream)
            self._pump(client, upstream)
        except (OSError, ValueError):  # a socket closed under us by a cut
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)
                    _reset(sock)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pairs = {client: upstream, upstream: client}
        while not self._stopping.is_set():
            with self._lock:
                state = self._state
            if state == "reset":
                return
            if state == "blackhole":
                self._stopping.wait(_POLL)  # read nothing, forward nothing
                continue
            # Holding replies: read only the client's side; the server's bytes wait unread.
            sources = [client] if state == "hold" else list(pairs)
            readable, _, _ = select.select(sources, [], [], _POLL)
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                pairs[sock].sendall(data)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)

    def _drop_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer does, not a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
