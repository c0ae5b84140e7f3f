"""The in-process loopback relay: mitmproxy sends it the final upstream request, it runs the attempts.

Why a relay: mitmproxy makes one server connection per flow and can only stream a body that comes
from a socket, so retries with account rotation cannot stream natively. The ``request`` hook points
the flow here (127.0.0.1, ephemeral port); what arrives is the request as it left mitmproxy (after
interception and edits in mitmweb), so nothing goes upstream while a flow is intercepted. While an
intercept filter is set, a flow comes here as the client's own request (what a held flow shows and the
user edits): the job's ``translate`` turns what arrived into the upstream call. The winning upstream
response is streamed back as it arrives; a stream that breaks mid-way ends with a Google-style in-band
error frame, never with a silent hang.

Streams, in time:
- while the attempts run (a slow upstream, a backoff, a held first event), nothing is committed; after
  ``keepalive_interval`` the 200 SSE headers go out with a keep-alive comment, and another each interval.
  Only comments were sent, so the attempts may still rotate; should they all fail, the stream ends with
  the error as an in-band frame instead of an error status;
- once a winner holds its first usable event, that goes out, then the rest as it arrives;
- silence of ``first_byte_timeout`` (keep-alives meanwhile) or the request's deadline ends the stream
  with an error frame: a stalled or trickling upstream cannot hold a client;
- the client leaving cancels the handler (``handler_cancellation``): the upstream call is closed at
  once, and that is nobody's failure: no report, no cooldown, no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .. import errors
from ..error_shapes import OPENAI_ERRORS, ErrorBody
from ..sse import KEEPALIVE
from .attempts import AttemptRecord, AttemptRunner, Winner, error_event
from .dialects import CallContext, parse_canonical_path

logger = logging.getLogger(__name__)

FLOW_HEADER = "x-ag-flow"
ERROR_HEADER = "x-ag-error"  # the body is already an OpenAI error: translate nothing
SSE_HEADERS = {"content-type": "text/event-stream"}
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "transfer-encoding", "upgrade",
                        "proxy-authenticate", "proxy-authorization", "trailer", "content-length",
                        "content-encoding", "host"})


@dataclass(slots=True)
class RelayJob:
    """What the request hook knows about a flow, and what the relay learns while serving it."""

    flow_id: str
    ctx: CallContext
    # shows a failed attempt (mitmweb, log); what it returns (its flow) is kept in ``shown_failures``
    report: Callable[[AttemptRecord], Awaitable[Any]] | None = None
    error_body: ErrorBody = OPENAI_ERRORS.body  # the error body of the API the client speaks
    created: float = field(default_factory=time.monotonic)
    account: str = ""
    url: str = ""
    attempts: int = 0
    error: errors.GatewayError | None = None
    sent_body: bytes = b""
    last_failed: str = ""  # the account of the latest failed attempt, for an error answer's headers
    planned: tuple[bytes, dict[str, Any]] | None = None  # the request body as the hook sent it, and parsed
    model: str = ""  # the upstream model that answered (another one than planned after a fallback)
    fallback_from: str = ""  # the planned model, when ag_model_fallback served ``model`` instead
    sent_headers: Mapping[str, str] | None = None  # the winning call's headers (secrets: never stored as is)
    shown_failures: list[Any] | None = None  # what ``report`` made of each failed attempt, in order
    # Set when the flow comes as the client's request (an intercept filter is on): (method, raw path, body
    # as they arrived) -> (upstream model, stream, upstream body); raises the GatewayError the client gets.
    translate: Callable[[str, str, bytes], Awaitable[tuple[str, bool, dict[str, Any]]]] | None = None

    def request_body(self, raw: bytes) -> dict[str, Any]:
        """The upstream request the relay received: the hook's own dict when the bytes are unchanged (a
        long conversation is costly to parse twice), else ``raw`` parsed (edited in mitmweb)."""
        if self.planned is not None and raw == self.planned[0]:
            return self.planned[1]
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.InvalidRequest("The upstream request body is not valid JSON (edited?).") from None
        if not isinstance(body, dict):
            raise errors.InvalidRequest("The upstream request body must be a JSON object.")
        return body

    @property
    def shown_account(self) -> str:
        """The account to name in X-Account-Email: only one that served (a failed attempt's account is in
        the error message and the log, not in a header that says who answered)."""
        return self.account

    async def failed(self, attempt: AttemptRecord) -> None:
        """The runner's ``on_failure``. A method, not a closure stored on the job: a closure over the
        job would make a reference cycle that keeps every finished flow alive until the GC runs."""
        self.last_failed = attempt.account
        if self.report is not None:
            shown = await self.report(attempt)
            if shown is not None:
                if self.shown_failures is None:
                    self.shown_failures = []
                self.shown_failures.append(shown)

    def won(self, winner: Winner) -> None:
        self.account, self.url, self.attempts = winner.account.label, winner.url, winner.attempts
        self.sent_body, self.sent_headers = winner.request_body, winner.request_headers
        self.model, self.fallback_from = winner.model, winner.fallback_from


async def read_whole(winner: Winner) -> bytes:
    """A non-stream upstream answer, whole; a connection that breaks off is Google's fault (502)."""
    if winner.body is not None:  # read and checked by the runner already
        return winner.body
    try:
        return await winner.response.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise errors.UpstreamError(f"The upstream answer broke off: {type(e).__name__}") from e
    finally:
        winner.response.release()


def error_response(err: errors.GatewayError, error_body: ErrorBody = OPENAI_ERRORS.body) -> web.Response:
    body = orjson.dumps(error_body(err))  # first: a shape may add its headers to the error (error_shapes.py)
    headers = {**err.headers, ERROR_HEADER: "1"}
    return web.Response(status=err.status, body=body, headers=headers,
                        content_type="application/json")


class Relay:
    def __init__(self, lookup: Callable[[str], RelayJob | None], runner: Callable[[], AttemptRunner],
                 keepalive_interval: float, first_byte_timeout: float = 120.0) -> None:
        self._lookup = lookup
        self._runner = runner
        self.keepalive_interval = keepalive_interval
        self.first_byte_timeout = first_byte_timeout
        self._app_runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # handler_cancellation: a client that leaves cancels its handler, and with it the upstream call.
        self._app_runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                         handler_cancellation=True)
        await self._app_runner.setup()
        site = web.TCPSite(self._app_runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._app_runner.addresses[0][1]
        logger.debug("relay listening on 127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        job = self._lookup(request.headers.get(FLOW_HEADER, ""))
        if job is None:
            unknown = errors.GatewayError("The relay got a request for an unknown or expired flow.")
            return error_response(unknown)
        try:
            return await self._serve(request, job)
        except ConnectionError:  # a write after the client (mitmproxy) hung up: nobody's failure
            logger.debug("client of flow %s left during its answer", job.flow_id)
            return web.Response(status=499)
        except errors.GatewayError as e:
            job.error = e
            return error_response(e, job.error_body)
        except Exception:  # boundary: our own bug becomes a 500 with one log line
            logger.exception("relay failed for flow %s", job.flow_id)
            job.error = errors.GatewayError("Internal gateway error in the relay; see the gateway log.")
            return error_response(job.error, job.error_body)

    async def _serve(self, request: web.Request, job: RelayJob) -> web.StreamResponse:
        if job.translate is not None:  # the client's request, perhaps edited while held: translated now
            model, stream, body = await job.translate(request.method, request.raw_path, await request.read())
        else:
            try:
                model, stream = parse_canonical_path(request.path_qs)
            except ValueError:
                raise errors.InvalidRequest(
                    f"The upstream request was edited into {request.method} {request.path_qs}, which is not "
                    "a generateContent call the gateway can send.") from None
            body = job.request_body(await request.read())
        run = self._runner().run(model, stream, body, job.ctx, job.failed)
        if not stream:
            winner = await run
            job.won(winner)
            return await self._whole(winner)
        return await self._stream(request, job, run)

    async def _whole(self, winner: Winner) -> web.Response:
        data = await read_whole(winner)
        headers = _forwardable(winner.response.headers)
        return web.Response(status=winner.response.status, body=data, headers=headers)

    async def _stream(self, request: web.Request, job: RelayJob,
                      run: Awaitable[Winner]) -> web.StreamResponse:
        resp: web.StreamResponse | None = None
        task = asyncio.ensure_future(run)
        try:
            while not (await asyncio.wait((task,), timeout=self.keepalive_interval))[0]:
                if resp is None:  # the attempts take long: commit to a 200 stream, keep the client patient
                    resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
                    await resp.prepare(request)
                await resp.write(KEEPALIVE)
        finally:
            if not task.done():  # the client left (handler cancelled): the attempts stop here
                task.cancel()
        try:
            winner = task.result()
        except Exception as e:
            if resp is None:
                raise  # nothing sent yet: the client gets the error with its status
            if not isinstance(e, errors.GatewayError):  # boundary, as in handle(): our own bug
                logger.exception("relay failed for flow %s", job.flow_id)
                e = errors.GatewayError("Internal gateway error in the relay; see the gateway log.")
            job.error = e
            await resp.write(error_event(e.message, e.status))  # committed by keep-alives: end in-band
            await resp.write_eof()
            return resp
        job.won(winner)
        upstream = winner.response
        if resp is None:
            resp = web.StreamResponse(status=upstream.status, headers=_forwardable(upstream.headers))
            await resp.prepare(request)
        completed = False
        try:
            await self._pump(winner, resp)
            completed = True
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = self._ended_why(e)
            logger.warning("upstream stream from %s ended early: %s", winner.account.label, reason)
            await resp.write(error_event(reason))
            completed = True
        finally:
            if completed:
                upstream.release()
            else:  # our client went away: abort the upstream stream instead of draining it
                upstream.close()
        await resp.write_eof()
        return resp

    def _ended_why(self, e: BaseException) -> str:
        if isinstance(e, StreamStalled):
            return str(e)
        if isinstance(e, aiohttp.ServerTimeoutError):  # aiohttp's own read time-out (sock_read) came first
            return self._silence_message()
        return f"The upstream stream broke off ({type(e).__name__})."

    def _silence_message(self) -> str:
        return f"The upstream stream sent nothing for {self.first_byte_timeout:g}s (ag_first_byte_timeout)."

    async def _pump(self, winner: Winner, resp: web.StreamResponse) -> None:
        """The held first event, then the rest as it arrives, keep-alives in silences, all within bounds."""
        for chunk in winner.head:
            await resp.write(chunk)
        content = winner.response.content
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(winner.deadline - time.monotonic(), 0.0)  # the runner's clock: monotonic
        silent_since = loop.time()
        while True:
            now = loop.time()
            if now >= deadline:
                raise StreamStalled("The upstream stream did not finish within ag_upstream_timeout.")
            if now - silent_since >= self.first_byte_timeout:
                raise StreamStalled(self._silence_message())
            # One timer per keep-alive interval, not one per chunk (a timeout per read cost ~5% of a busy
            # stream's CPU): it is armed for the moment a check would be due if nothing arrived, and when it
            # fires amid a lively stream the check finds recent data and arms the next one. Cutting a write
            # short loses nothing: aiohttp has handed the bytes to the transport before it waits to drain.
            check_at = min(silent_since + min(self.keepalive_interval, self.first_byte_timeout), deadline)
            try:
                async with asyncio.timeout_at(check_at):
                    while chunk := await content.readany():
                        silent_since = loop.time()
                        await resp.write(chunk)
                    return  # b"": the upstream finished
            except aiohttp.ClientError:  # aiohttp's own read time-out is a TimeoutError too: not ours
                raise
            except TimeoutError:
                if content.at_eof():
                    return
                if loop.time() - silent_since >= self.keepalive_interval:
                    await resp.write(KEEPALIVE)  # long silent thinking: keep intermediaries patient


class StreamStalled(TimeoutError):
    """A committed stream went silent for ``first_byte_timeout`` or outlived the request's deadline."""


def _forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
