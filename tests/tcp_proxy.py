"""A TCP proxy on 127.0.0.1 that can play a hung server: `pause()` stops forwarding bytes either
way while every socket stays open (the server's kernel would still accept and acknowledge),
`resume()` goes on. For a database or Redis that hangs without stopping the shared servers."""

from __future__ import annotations

import select
import socket
import threading


class PausableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()

    def __enter__(self) -> PausableProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                self.flowing.wait()
                readable, _, _ = select.select([source], [], [], 0.2)
                if not readable:
                    continue
                self.flowing.wait()
                if self.closed.is_set():
                    return
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except (OSError, ValueError):  # closed meanwhile (ValueError: select on a closed socket)
            return
