"""Serve a MoodleSite on a free loopback port from a background thread, so that code
under test can run its own event loop (``asyncio.run``) in the calling thread."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class SimServer:
    def __init__(self, site, host: str = "127.0.0.1", port: int = 0):
        self.site = site
        self.host = host
        self.port = port or None
        self._wanted_port = port  # the same site again at another commit keeps its base_url
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sim-server", daemon=True)
        self._error: Exception | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            runner = web.AppRunner(self.site.app(), access_log=None)
            self._loop.run_until_complete(runner.setup())
            tcp = web.TCPSite(runner, self.host, self._wanted_port)
            self._loop.run_until_complete(tcp.start())
            self.port = runner.addresses[0][1]
        except Exception as error:  # reported to start()
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def call(self, function, *args):
        """Run function(*args) on the server's loop (thread-safe access to the site)."""
        async def invoke():
            return function(*args)
        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(10)

    def start(self) -> SimServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
