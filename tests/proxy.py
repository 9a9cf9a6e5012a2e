"""A database proxy on a unix socket that cuts the connection at COMMIT: the network fault
or server restart that leaves a client not knowing whether its transaction committed."""

from __future__ import annotations

import os
import socket
import threading
import time


class CommitCutter:
    """Forwards a client's connections to ``upstream`` (a unix socket).  The first
    connection that sends COMMIT is cut: ``"after"`` forwards the COMMIT, lets the server do
    it, and closes before its answer reaches the client; ``"before"`` closes without
    forwarding it (the server then rolls back).  Later connections pass through, unless
    ``refuse_after_cut`` (the server stays out of reach)."""

    def __init__(self, path: str, upstream: str, when: str = "after", refuse_after_cut: bool = False):
        self.path, self.upstream, self.when, self.refuse_after_cut = path, upstream, when, refuse_after_cut
        self.cut = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o777)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CommitCutter:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set() and self.refuse_after_cut:
                client.close()
                continue
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            cut_here = threading.Event()  # this connection's COMMIT was seen: nothing more reaches the client
            threading.Thread(target=self._pump, args=(client, server, True, cut_here), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False, cut_here), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool, cut_here) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or (not from_client and cut_here.is_set()):
                    break
                # The statement COMMIT alone (PostgreSQL's Q message, MySQL's COM_QUERY), not
                # the words of another statement ("ON COMMIT DROP").
                if from_client and not self.cut.is_set() and len(data) < 32 \
                        and data.rstrip(b"\0").upper().endswith(b"COMMIT"):
                    cut_here.set()
                    self.cut.set()
                    if self.when == "after":
                        target.sendall(data)
                        time.sleep(0.5)  # the server commits; its answer never comes back
                    break
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
