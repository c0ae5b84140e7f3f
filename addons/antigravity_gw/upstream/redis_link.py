"""The one connection of a gateway instance to the shared Redis/Valkey (``ag_state_url``), and its health.

Rules:
- Redis is a helper, never a dependency of a request: every call has a short deadline (``timeout``); a
  call that fails or times out raises ``Unavailable``, which every user turns into "do it with this
  instance's local state". A lost connection marks the link down at once, and so do ``SLOW_CALLS``
  timeouts in a row (one slow moment of a busy machine does not). While the link is down, calls raise
  at once (no request waits for a dead server); the watcher probes it every ``retry_every`` seconds;
- "degraded" is logged once per outage, and "restored" once when it ends; then every ``on_up``
  callback runs (resync: push what this instance learned meanwhile, pull what the others did);
- the watcher also listens to the event channel (pub/sub): other instances' cooldowns, token
  rotations and disables arrive here, are parsed once, and go to the handler of their kind; an
  instance ignores its own events;
- the URL may hold a password: only host, port and database number reach the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

logger = logging.getLogger(__name__)

PREFIX = "ag:"
CHANNEL = PREFIX + "events"
DEFAULT_TIMEOUT = 0.3  # seconds one call may take before the instance stops waiting for Redis
RETRY_EVERY = 1.0  # seconds between probes of a Redis that is down
RESYNC_TIMEOUT = 10.0  # seconds a resync (every key of a kind, at once) may take
SLOW_CALLS = 3  # timeouts in a row that make a Redis that still answers count as down

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class Unavailable(Exception):
    """Redis did not answer in time (or is known to be down): use the local state."""


def describe(url: str) -> str:
    """``redis://host:port/db`` without user or password, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or ''}"


class RedisLink:
    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, retry_every: float = RETRY_EVERY,
                 client: aioredis.Redis | None = None) -> None:
        self.url = url
        self.where = describe(url)
        self.instance = secrets.token_hex(6)  # tells this instance's own events apart
        self.timeout = timeout
        self.retry_every = retry_every
        self.up = False
        # Retries and reconnects are the watcher's job: a call tries once, within its deadline.
        self.client = client or aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
            health_check_interval=0, max_connections=64)
        self._handlers: dict[str, Handler] = {}
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._outage_logged = False
        self.outages = 0  # how many times the link went down (tests, the log)
        self._slow = 0  # calls in a row that ran past the deadline

    # ---- wiring ---------------------------------------------------------------------------------
    def on_event(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def on_up(self, resync: Callable[[], Awaitable[None]]) -> None:
        self._on_up.append(resync)

    # ---- calls ----------------------------------------------------------------------------------
    async def run[R](self, call: Callable[[aioredis.Redis], Awaitable[R]], *,
                     timeout: float | None = None) -> R:
        """``call(client)`` within the deadline; ``Unavailable`` when the link is down or the call fails.
        ``timeout``: a longer deadline for the resyncs, which move everything at once (never a request)."""
        if not self.up:
            raise Unavailable(self.where)
        try:
            async with asyncio.timeout(timeout or self.timeout):
                result = await call(self.client)
        except (TimeoutError, RedisTimeout) as e:
            self._slow += 1
            if self._slow >= SLOW_CALLS:
                self.down(f"{self._slow} calls in a row took over {self.timeout:g} s")
            raise Unavailable(self.where) from e
        except (RedisError, OSError) as e:
            self.down(e)
            raise Unavailable(self.where) from e
        self._slow = 0
        return result

    def event(self, kind: str, **data: Any) -> bytes:
        """An event for the channel, as ``PUBLISH`` (or a script) sends it."""
        return orjson.dumps({"k": kind, "src": self.instance, **data})

    async def publish(self, kind: str, **data: Any) -> None:
        """Best effort: an event lost while Redis is down is made up for by the resync."""
        with contextlib.suppress(Unavailable):
            await self.run(lambda r: r.publish(CHANNEL, self.event(kind, **data)))

    def down(self, error: BaseException | str) -> None:
        if not self.up:
            return
        self.up = False
        self.outages += 1
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning("shared state: Redis at %s is unreachable (%s); serving from this instance's "
                           "local state (degraded) until it returns", self.where,
                           error if isinstance(error, str) else type(error).__name__)

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._watcher is not None

    async def start(self) -> None:
        """Connect (without waiting long: a Redis that is down at start-up is degraded mode, not an error)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="ag-shared-state")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.timeout * 4, 1.0)):
                    while not self.up and not self._watcher.done():
                        await asyncio.sleep(0.01)
            if not self.up:
                self.outages += 1
                self._outage_logged = True
                logger.warning("shared state: Redis at %s is not reachable at start-up; serving from this "
                               "instance's local state (degraded) until it is", self.where)

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        self.up = False
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await self.client.aclose()

    async def _watch(self) -> None:
        first = True
        while True:
            pubsub = self.client.pubsub()
            try:
                async with asyncio.timeout(self.timeout * 4):
                    await pubsub.subscribe(CHANNEL)  # before the resync: nothing published after it is missed
                    await self.client.ping()
                self._came_up(first)
                first = False
                for resync in self._on_up:
                    await resync()
                while self.up:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        await self._dispatch(message.get("data"))
            except (RedisError, OSError, TimeoutError) as e:
                self.down(e)
            except Unavailable:
                pass  # a resync call failed: down() already said so, or it was slow: try again
            except Exception as e:  # whatever it was, the watcher must live on to reconnect
                logger.exception("shared state: the Redis watcher failed; reconnecting")
                self.down(e)
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        await pubsub.aclose()
            await asyncio.sleep(self.retry_every)

    def _came_up(self, first: bool) -> None:
        self.up, self._slow = True, 0
        if first and not self.outages:
            logger.info("shared state: Redis at %s (instance %s)", self.where, self.instance)
        elif self._outage_logged:
            logger.warning("shared state: Redis at %s is back; resyncing and sharing again", self.where)
        self._outage_logged = False

    async def _dispatch(self, data: Any) -> None:
        try:
            event = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(event, dict) or event.get("src") == self.instance:
            return
        handler = self._handlers.get(str(event.get("k")))
        if handler is None:
            return
        try:
            result = handler(event)
            if result is not None:
                await result
        except Unavailable:
            pass
        except Exception:  # one bad event must not stop the listener
            logger.exception("shared state: could not apply a %s event", event.get("k"))
