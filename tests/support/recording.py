"""An httpx2 transport for the openai client that keeps a copy of every answer's body, streams included,
so a test can check afterwards what the gateway really sent (``tests/support/openai_schema.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2


@dataclass(slots=True)
class Exchange:
    method: str
    path: str
    status: int
    content_type: str
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._exchange.chunks.append(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx2.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        exchange = Exchange(request.method, request.url.path, response.status_code,
                            response.headers.get("content-type", ""))
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        return httpx2.Response(response.status_code, headers=response.headers,
                               stream=_Tee(response.stream, exchange), extensions=response.extensions)
