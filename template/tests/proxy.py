"""A TCP proxy a test can cut and restore, to take a real server "down" without stopping it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from types import TracebackType

from sqlalchemy import make_url


class TcpProxy:
    """Forwards connections to the target; with `tls`, it is a TLS server in front of a plain one."""

    def __init__(self, target_host: str, target_port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self._target = (target_host, target_port)
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        await self.up()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.down()

    async def up(self) -> None:
        """Accept connections again, on the same port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections and cut every open one."""
        self._flowing.set()  # frozen pipes wake up, find their connection cut, and end
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._streams):
            writer.close()
        self._streams.clear()

    def freeze(self) -> None:
        """Keep every connection open but pass no more bytes: a server that never answers."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        self._streams.update((client_writer, server_writer))
        await asyncio.gather(
            _pipe(client_reader, server_writer, self._flowing),
            _pipe(server_reader, client_writer, self._flowing),
        )
        self._streams.difference_update((client_writer, server_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def proxied_database(database_url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A proxy in front of the database at `database_url`, and the URL that goes through it."""
    url = make_url(database_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
