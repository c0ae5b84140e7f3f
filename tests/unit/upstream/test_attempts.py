"""upstream/attempts.py: the retry policy through a fake ``send`` (no sockets), with fake clocks."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import orjson
import pytest

from antigravity_gw import errors
from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.attempts import AttemptRunner
from antigravity_gw.upstream.dialects import CallContext, CloudCode, PublicGemini
from antigravity_gw.upstream.oauth import ProjectResolver, ProjectUnavailable, TokenService
from antigravity_gw.upstream.pool import LeastRecentlyUsed, Pool

WALL = 1_800_000_000.0
BASES = ("https://sandbox/v1internal", "https://daily/v1internal", "https://prod/v1internal")


class Clock:
    """One fake time for the pool (wall clock) and the runner (monotonic); sleeping advances it."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def wall(self) -> float:
        return WALL + self.t

    def mono(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.t += seconds


class Content:
    """aiohttp's StreamReader as the runner uses it: ``readany`` gives the next chunk, b"" at the end; a
    chunk that is an exception is raised (a cut connection), a float is a silence of that many seconds."""

    def __init__(self, chunks: list) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if isinstance(chunk, BaseException):
            raise chunk
        if isinstance(chunk, float):
            await asyncio.sleep(chunk)
            return await self.readany()
        return chunk

    def at_eof(self) -> bool:
        return not self.chunks


class Resp:
    def __init__(self, status: int, body: dict | bytes = b"", headers: dict | None = None,
                 chunks: list | None = None) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else orjson.dumps(body)
        self.headers = headers or {}
        self.content = Content(chunks if chunks is not None else [self.body])
        self.released = self.closed = False

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


GOOD_EVENT = b'data: {"response": {"candidates": []}}\r\n\r\n'


def google(status: int, reason: str = "", retry: str | None = None, model: str = "",
           gstatus: str = "") -> Resp:
    details = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                        "metadata": {"model": model} if model else {}})
    if retry:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
    return Resp(status, {"error": {"code": status, "message": f"error {status}", "status": gstatus or "X",
                                   "details": details}})


def quota(retry: str, model: str = "m") -> Resp:
    return google(429, "QUOTA_EXHAUSTED", retry, model, "RESOURCE_EXHAUSTED")


class Upstream:
    """The ``send`` seam: scripted answers per credential (then 200), every call recorded."""

    def __init__(self, clock: Clock | None = None, latency: float = 0.0) -> None:
        self.script: dict[str, list] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.clock = clock
        self.latency = latency

    def on(self, credential: str, *answers) -> None:
        self.script[credential].extend(answers)

    async def __call__(self, call):
        bearer = call.headers.get("authorization", "").removeprefix("Bearer ")
        credential = bearer or call.headers["x-goog-api-key"]
        self.calls.append((credential, call.url.rsplit(":", 1)[0]))
        if self.clock is not None:
            self.clock.t += self.latency
        answers = self.script[credential]
        answer = answers.pop(0) if answers else Resp(200, GOOD_EVENT)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def who(self) -> list[str]:
        return [c for c, _ in self.calls]


class Endpoint:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, refresh_token: str):
        self.calls.append(refresh_token)
        return 200, {"access_token": f"fresh-{refresh_token}", "expires_in": 3599}


class Store:
    async def save_tokens(self, account): ...
    async def save_disabled(self, account): ...
    async def stored_refresh_token(self, account):
        return account.refresh_token


def oauth(name: str, **kw) -> Account:
    fields = {"access_token": f"at-{name}", "refresh_token": f"rt-{name}", "expiry_timestamp": WALL + 3600,
              "project_id": f"p-{name}", **kw}
    return Account(name, f"{name}@x", "oauth", Path(f"/d/{name}.json"), **fields)


def setup(*accounts: Account, max_attempts: int = 6, total: float = 600.0, bases=BASES, projects=None,
          real_time: bool = False):
    clock = Clock()
    pool = Pool(clock=clock.wall, scheduler=LeastRecentlyUsed())
    pool.replace(accounts)
    endpoint = Endpoint()
    tokens = TokenService(endpoint, Store(), clock=clock.wall)
    upstream = Upstream(clock)
    failures = []

    async def record(attempt):
        failures.append((attempt.account, attempt.status, attempt.decision))

    dialects = {"oauth": CloudCode(bases, "ua"), "api_key": PublicGemini("https://g")}
    runner = AttemptRunner(pool, tokens, dialects, upstream, max_attempts=max_attempts, total_timeout=total,
                           projects=projects,
                           on_failure=record, sleep=asyncio.sleep if real_time else clock.sleep,
                           clock=time.monotonic if real_time else clock.mono)
    return runner, upstream, clock, endpoint, failures


async def run(runner, model: str = "m", session: str = ""):
    return await runner.run(model, True, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                            CallContext("req-1", session))


async def cooling(runner, model: str = "m") -> dict[str, float]:
    return {s.account.id: s.until - WALL for s in await runner.pool.status(model) if s.state == "cooling"}


async def test_429_rotates_and_cools_down_only_the_account_that_got_it():
    runner, up, clock, _, failures = setup(oauth("a"), oauth("b"), oauth("c"))
    up.on("at-a", quota("3.5s"))
    winner = await run(runner)
    assert (winner.account.id, winner.attempts) == ("b", 2)
    assert up.calls == [("at-a", BASES[0]), ("at-b", BASES[0])]  # a 429 does not try the next base
    assert await cooling(runner) == {"a": 3.5}
    assert await cooling(runner, "other-model") == {}  # QUOTA_EXHAUSTED with a model: per model
    assert failures == [("a@x", 429, "rotate")]
    assert clock.slept == []


async def test_a_429_without_a_model_cools_the_whole_account():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(429, "SOME_REASON", gstatus="RESOURCE_EXHAUSTED"))
    await run(runner)
    assert await cooling(runner, "other-model") == {"a": 30.0}


async def test_capacity_moves_to_the_next_base_then_to_another_account():
    runner, up, clock, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", *[google(503, "MODEL_CAPACITY_EXHAUSTED")] * 3)
    winner = await run(runner)
    assert winner.account.id == "b"
    assert up.calls == [("at-a", BASES[0]), ("at-a", BASES[1]), ("at-a", BASES[2]), ("at-b", BASES[0])]
    assert clock.slept == [] and await cooling(runner) == {}  # capacity is the model's: nobody cools down


async def test_capacity_on_a_lone_account_backs_off_and_asks_it_again():
    runner, up, clock, *_ = setup(oauth("a"), bases=BASES[:1])
    up.on("at-a", google(503), google(503), google(529))
    winner = await run(runner)
    assert (winner.account.id, winner.attempts) == ("a", 4)
    assert clock.slept == [0.5, 1.0, 2.0]


async def test_401_refreshes_the_token_and_retries_the_same_account_once():
    runner, up, _, endpoint, failures = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(401, gstatus="UNAUTHENTICATED"))
    winner = await run(runner)
    assert winner.account.id == "a"
    assert up.who() == ["at-a", "fresh-rt-a"]
    assert endpoint.calls == ["rt-a"]
    assert failures == [("a@x", 401, "refresh")]


async def test_401_after_a_refresh_rotates_and_cools_the_account():
    runner, up, _, endpoint, _ = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(401))
    up.on("fresh-rt-a", google(401))
    winner = await run(runner)
    assert winner.account.id == "b" and endpoint.calls == ["rt-a"]
    assert await cooling(runner) == {"a": 60.0}


async def test_403_rotates_and_marks_the_account():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(403, "VALIDATION_REQUIRED", gstatus="PERMISSION_DENIED"))
    assert (await run(runner)).account.id == "b"
    status = {s.account.id: (s.state, s.reason) for s in await runner.pool.status()}
    assert status["a"] == ("cooling", "account verification required")


async def test_404_falls_back_through_the_bases_then_rotates_for_that_model_only():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(404), google(404), google(404))
    assert (await run(runner)).account.id == "b"
    assert len(up.calls) == 4
    assert await cooling(runner) == {"a": 300.0} and await cooling(runner, "other") == {}


async def test_connection_errors_fall_back_to_the_next_base():
    runner, up, _, _, failures = setup(oauth("a"))
    up.on("at-a", aiohttp.ClientConnectionError("refused"), TimeoutError())
    winner = await run(runner)
    assert (winner.url, winner.attempts) == (f"{BASES[2]}:streamGenerateContent?alt=sse", 3)
    assert [f[2] for f in failures] == ["next base", "next base"]


async def test_a_400_goes_to_the_client_at_once():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", google(400, gstatus="INVALID_ARGUMENT"))
    with pytest.raises(errors.InvalidRequest):
        await run(runner)
    assert up.who() == ["at-a"]


async def test_max_attempts_bounds_the_upstream_calls():
    runner, up, *_ = setup(oauth("a"), oauth("b"), max_attempts=4)
    up.on("at-a", *[google(500)] * 3)
    up.on("at-b", *[google(500)] * 3)
    with pytest.raises(errors.PoolExhausted) as e:
        await run(runner)
    assert len(up.calls) == 4
    assert (e.value.status, e.value.type) == (503, "api_error")  # all accounts failing: not a rate limit
    assert "a@x: failed in this request (500 X)" in e.value.message


async def test_backoff_sleeps_never_pass_the_deadline():
    runner, up, clock, *_ = setup(oauth("a"), bases=BASES[:1], max_attempts=50, total=3.0)
    up.latency = 0.1
    up.on("at-a", *[google(503)] * 50)
    with pytest.raises(errors.GatewayError):
        await run(runner)
    assert clock.t <= 3.0
    assert sum(clock.slept) + 0.1 * len(up.calls) <= 3.0


async def test_the_deadline_cuts_a_slow_upstream():
    runner, up, *_ = setup(oauth("a"), total=0.2, real_time=True)  # asyncio.timeout runs on the loop's clock
    never = asyncio.get_running_loop().create_future()

    async def hang(call):
        up.calls.append(call.url)
        return await never

    runner._send = hang  # never answers: only the deadline can end the run (no wall-clock bound needed)
    with pytest.raises(errors.UpstreamTimeout, match=r"ag_upstream_timeout \(0.2s\) after 1 attempt"):
        await run(runner)
    assert len(up.calls) == 1


async def test_a_short_cooldown_is_waited_for_instead_of_failing():
    runner, up, clock, *_ = setup(oauth("a"))
    up.on("at-a", quota("1.5s"))
    winner = await run(runner)
    assert (winner.account.id, clock.slept) == ("a", [1.5])


async def test_everyone_cooling_is_a_429_naming_each_account_with_the_earliest_retry_after():
    runner, up, *_ = setup(oauth("a"), oauth("b"), oauth("c"))
    runner.pool.find("c").disabled, runner.pool.find("c").disabled_reason = True, "invalid_grant: revoked"
    up.on("at-a", quota("30s"))
    up.on("at-b", quota("50s"))
    with pytest.raises(errors.PoolExhausted) as e:
        await run(runner)
    err = e.value
    assert err.status == 429
    assert err.headers == {"retry-after": "30", "retry-after-ms": "30000"}
    assert "All 3 accounts are unavailable for model 'm'" in err.message
    assert "a@x: quota exhausted until 2027-01-15T08:00:30Z (in 30s)" in err.message
    assert "b@x: quota exhausted until 2027-01-15T08:00:50Z (in 50s)" in err.message
    assert "c@x: disabled (invalid_grant: revoked)" in err.message
    calls = len(up.calls)
    with pytest.raises(errors.PoolExhausted):  # the next request does not even ask upstream
        await run(runner)
    assert len(up.calls) == calls


async def test_some_accounts_failed_in_this_request_and_others_are_cooling():
    runner, up, clock, *_ = setup(oauth("a"), oauth("b"), bases=BASES[:1], max_attempts=6)
    await runner.pool.cool_down(runner.pool.find("a"), 40, "rate limited")
    up.on("at-b", *[google(503, "MODEL_CAPACITY_EXHAUSTED", gstatus="UNAVAILABLE")] * 10)
    with pytest.raises(errors.PoolExhausted) as e:
        await run(runner)
    err = e.value
    assert err.status == 503
    assert "a@x: rate limited until" in err.message
    assert "b@x: failed in this request (503 UNAVAILABLE)" in err.message
    assert int(err.headers["retry-after"]) == pytest.approx(40 - clock.t, abs=1)


async def test_every_account_disabled_or_none_configured_is_a_503():
    runner, *_ = setup()
    with pytest.raises(errors.PoolExhausted) as e:
        await run(runner)
    assert (e.value.status, e.value.code) == (503, "no_accounts")
    runner, *_ = setup(oauth("a", disabled=True, disabled_reason="manual"))
    with pytest.raises(errors.PoolExhausted) as e:
        await run(runner)
    assert e.value.status == 503 and "a@x: disabled (manual)" in e.value.message


async def test_invalid_grant_disables_and_the_next_account_answers():
    runner, up, *_ = setup(oauth("a", expiry_timestamp=0), oauth("b"))

    async def revoked(refresh_token):
        return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}

    runner.tokens.endpoint = revoked
    winner = await run(runner)
    assert winner.account.id == "b" and up.who() == ["at-b"]
    a = runner.pool.find("a")
    assert (a.disabled, a.disabled_reason) == (True, "invalid_grant: Token has been expired or revoked.")


async def test_a_temporary_refresh_failure_cools_the_account():
    runner, _, *_ = setup(oauth("a", expiry_timestamp=0), oauth("b"))

    async def down(refresh_token):
        return 503, {"error": "internal_failure"}

    runner.tokens.endpoint = down
    assert (await run(runner)).account.id == "b"
    assert await cooling(runner) == {"a": 60.0}


async def test_a_missing_project_is_resolved_first_and_an_unset_up_account_rotates():
    class Projects:
        def __init__(self):
            self.asked = []

        known = staticmethod(ProjectResolver.known)

        async def ensure(self, account, token):
            self.asked.append(account.id)
            if account.id == "a":
                raise ProjectUnavailable("no cloudaicompanionProject", missing=True)
            account.project_id = "resolved"
            return "resolved"

    projects = Projects()
    runner, up, *_ = setup(oauth("a", project_id=""), oauth("b", project_id=""), projects=projects)
    winner = await run(runner)
    assert winner.account.id == "b" and winner.account.project_id == "resolved"
    assert up.who() == ["at-b"] and projects.asked == ["a", "b"]
    assert await cooling(runner) == {"a": 600.0}


async def test_api_key_accounts_use_the_public_api():
    key = Account("k", "key-1", "api_key", None, api_key="AIza-k")
    runner, up, *_ = setup(key)
    winner = await run(runner)
    assert (winner.url, up.who()) == ("https://g/v1beta/models/m:streamGenerateContent?alt=sse", ["AIza-k"])


async def test_sticky_sessions_reach_the_pool():
    from antigravity_gw.upstream.pool import Sticky

    runner, _, clock, *_ = setup(oauth("a"), oauth("b"), oauth("c"))
    runner.pool.scheduler = Sticky()
    first = (await run(runner, session="conv")).account.id
    for _ in range(3):
        clock.t += 1
        await run(runner, session="other")
        assert (await run(runner, session="conv")).account.id == first


# ---- one request never locks the pool out (bare 429s) ----------------------------------------------
def bare() -> Resp:
    return Resp(429, {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                                "status": "RESOURCE_EXHAUSTED"}})


async def test_bare_429s_from_two_accounts_answer_429_at_once_and_cool_nobody():
    runner, up, clock, *_ = setup(oauth("a"), oauth("b"), oauth("c"))
    up.on("at-a", bare())
    up.on("at-b", bare())
    with pytest.raises(errors.UpstreamRateLimited) as e:
        await run(runner)
    assert e.value.status == 429 and e.value.code == "request_resource_exhausted"
    assert "no account was cooled down" in e.value.message and "a@x, b@x" in e.value.message
    assert up.who() == ["at-a", "at-b"]  # c is not asked: the request is at fault
    assert await cooling(runner) == {} and clock.slept == []
    served = []
    for _ in range(3):
        clock.t += 1  # the LRU order needs distinct times
        served.append((await run(runner)).account.id)
    assert sorted(served) == ["a", "b", "c"]  # everyone serves on


async def test_a_bare_429_nobody_repeats_cools_that_account_a_few_seconds_for_that_model():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    up.on("at-a", bare())
    assert (await run(runner)).account.id == "b"
    assert await cooling(runner) == {"a": 2.0}
    assert await cooling(runner, "other-model") == {}


async def test_real_quota_429s_still_cool_as_google_says_beside_a_bare_one():
    runner, up, *_ = setup(oauth("a"), oauth("b"), oauth("c"))
    up.on("at-a", bare())
    up.on("at-b", quota("40s"))
    assert (await run(runner)).account.id == "c"
    assert await cooling(runner) == {"a": 2.0, "b": 40.0}


# ---- the version gate ------------------------------------------------------------------------------
async def test_the_version_gate_names_ag_user_agent_and_blames_no_account():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    runner.dialects["oauth"] = CloudCode(BASES, "Antigravity/1.0.0 (X11; Linux x86_64)")
    up.on("at-a", google(400, gstatus="INVALID_ARGUMENT"))
    up.script["at-a"][0].body = orjson.dumps({"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "This version of Antigravity is no longer supported. Please update to receive the latest "
                   "features."}})
    with pytest.raises(errors.UpstreamError) as e:
        await run(runner)
    assert e.value.code == "client_version_rejected" and e.value.status == 502
    assert "ag_user_agent" in e.value.message and "newer than 1.0.0" in e.value.message
    assert up.who() == ["at-a"] and await cooling(runner) == {}


def test_the_version_gate_error_names_the_version_google_asks_for():
    from antigravity_gw.upstream.attempts import version_gate_error
    from antigravity_gw.upstream.google_errors import GoogleError

    gate = GoogleError(400, message="This version of Antigravity is no longer supported. Please update to "
                                    "4.6.1 or newer.")
    err = version_gate_error(gate, "Antigravity/4.3.0")
    assert "--set ag_user_agent=4.6.1" in err.message


# ---- ag_model_fallback ------------------------------------------------------------------------------
async def test_fallback_serves_the_target_once_every_account_is_exhausted_for_the_model():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    runner.fallbacks = (("m", "n"),)
    up.on("at-a", quota("600s", model="m"))
    up.on("at-b", quota("600s", model="m"))
    winner = await run(runner)
    assert (winner.model, winner.fallback_from) == ("n", "m")
    assert [c["model"] for c in map(orjson.loads, [winner.request_body])] == ["n"]
    calls = len(up.calls)
    again = await run(runner)  # known before the first attempt now: m is not asked
    assert (again.model, again.fallback_from, len(up.calls)) == ("n", "m", calls + 1)


async def test_no_fallback_while_an_account_can_serve_the_model_or_without_an_entry():
    runner, up, *_ = setup(oauth("a"), oauth("b"))
    runner.fallbacks = (("gemini-3-*", "gemini-2.5-pro"),)
    up.on("at-a", quota("600s", model="m"))
    winner = await run(runner)
    assert (winner.model, winner.fallback_from, winner.account.id) == ("m", "", "b")
    up.on("at-b", quota("600s", model="m"))
    with pytest.raises(errors.PoolExhausted):
        await run(runner)  # "m" matches no FROM


async def test_fallback_wildcards_and_chains_end_at_a_cycle():
    runner, up, *_ = setup(oauth("a"))
    runner.fallbacks = (("gemini-3-*", "x"), ("x", "gemini-3-pro"))
    await runner.pool.cool_down(runner.pool.find("a"), 600, "quota exhausted", "gemini-3-pro")
    await runner.pool.cool_down(runner.pool.find("a"), 600, "quota exhausted", "x")
    with pytest.raises(errors.PoolExhausted):
        await run(runner, model="gemini-3-pro")
    assert up.calls == []


# ---- the quota snapshot ------------------------------------------------------------------------------
async def test_an_exhausted_snapshot_skips_the_account_for_that_model_until_its_reset():
    from antigravity_gw.upstream.quota import AccountQuota, ModelQuota

    runner, _, clock, *_ = setup(oauth("a"), oauth("b"))
    runner.pool.quota.clock = clock.wall
    runner.pool.quota.store("a", AccountQuota(models={"m": ModelQuota(0.0, WALL + 60),
                                                     "other": ModelQuota(0.5, WALL + 60)}))
    assert {(await run(runner)).account.id for _ in range(3)} == {"b"}
    assert (await run(runner, model="other")).account.id == "a"  # the same account serves another model
    clock.t += 61
    assert "a" in {(await run(runner)).account.id for _ in range(2)}
# ---- a bad 200 is a failed attempt -------------------------------------------------------------
BAD_STREAMS = {
    "html page": [b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"],
    "invalid json event": [b"data: {not json\r\n\r\n"],
    "error object event": [b'data: {"error": {"code": 500, "message": "boom"}}\r\n\r\n'],
    "cut before the first event": [b'data: {"response": {"cand', aiohttp.ClientPayloadError("cut")],
    "empty": [],
    "only keep-alives then the end": [b": keep-alive\r\n\r\n"],
    "an object without candidates": [b'data: {"response": {"what": 1}}\r\n\r\n'],
}


@pytest.mark.parametrize("chunks", BAD_STREAMS.values(), ids=BAD_STREAMS.keys())
async def test_a_bad_200_stream_rotates_to_the_next_account_like_a_5xx(chunks):
    runner, up, _, _, failures = setup(oauth("a"), oauth("b"), bases=BASES[:1])
    bad = Resp(200, chunks=chunks)
    up.on("at-a", bad)
    winner = await run(runner)
    assert winner.account.id == "b" and b"".join(winner.head) == GOOD_EVENT
    assert failures == [("a@x", 200, "retry")]  # reported, treated like a 5xx: a short backoff, no cooldown
    assert bad.closed  # never drained
    assert await runner.pool.status("m") and all(s.state == "ready" for s in await runner.pool.status("m"))


async def test_a_stream_is_held_only_up_to_its_first_usable_event():
    runner, up, *_ = setup(oauth("a"), bases=BASES[:1])
    rest = b'data: {"response": {"candidates": [{"finishReason": "STOP"}]}}\r\n\r\n'
    resp = Resp(200, chunks=[b": keep-alive\r\n\r\n", b'data: {"response": {"candi', b'dates": []}}\r\n\r\n',
                             rest])
    up.on("at-a", resp)
    winner = await run(runner)
    assert b"".join(winner.head) == b': keep-alive\r\n\r\ndata: {"response": {"candidates": []}}\r\n\r\n'
    assert resp.content.chunks == [rest] and not resp.closed  # the rest is left for the relay to pump


async def test_an_unterminated_last_event_at_the_end_of_the_stream_is_usable():
    runner, up, *_ = setup(oauth("a"), bases=BASES[:1])
    up.on("at-a", Resp(200, chunks=[b'data: {"response": {"candidates": []}}']))
    assert (await run(runner)).account.id == "a"


async def test_a_silent_stream_is_a_failed_attempt_after_the_first_byte_timeout():
    runner, up, _, _, failures = setup(oauth("a"), oauth("b"), bases=BASES[:1], real_time=True)
    runner.first_byte_timeout = 0.05
    up.on("at-a", Resp(200, chunks=[3600.0]))  # silent for an hour: only the time-out can move on
    winner = await run(runner)
    assert winner.account.id == "b"
    assert failures == [("a@x", 200, "retry")]


@pytest.mark.parametrize(("body", "words"), [
    (b"<html><body>Service Unavailable</body></html>", "HTML"),
    (b"{not json", "not valid JSON"),
    (b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}', "overloaded"),
    (b"", "empty"),
    (b"[1, 2]", "not an object"),
])
async def test_a_bad_200_answer_is_validated_before_it_wins(body, words):
    runner, up, _, _, failures = setup(oauth("a"), bases=BASES[:1], max_attempts=2)
    up.on("at-a", Resp(200, body), Resp(200, body))
    with pytest.raises(errors.GatewayError) as e:
        await runner.run("m", False, {"contents": []}, CallContext("r"))
    assert (e.value.status, e.value.type) == (503, "api_error")
    assert words in e.value.message
    assert [f[1:] for f in failures] == [(200, "retry"), (200, "retry")]


async def test_a_good_non_stream_answer_is_parsed_once_and_unwrapped():
    runner, up, *_ = setup(oauth("a"), bases=BASES[:1])
    up.on("at-a", Resp(200, {"response": {"candidates": [{"index": 0}]}, "traceId": "t"}))
    winner = await runner.run("m", False, {"contents": []}, CallContext("r"))
    assert winner.parsed == {"candidates": [{"index": 0}]} and winner.response.released


async def test_an_unreachable_upstream_is_a_502_upstream_unreachable_not_a_rate_limit():
    runner, up, *_ = setup(oauth("a"), max_attempts=4)
    refused = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(
        "h", 1, False, True, None, None, None), OSError(111, "Connection refused"))
    up.on("at-a", *[refused] * 4)
    with pytest.raises(errors.UpstreamUnreachable) as e:
        await run(runner)
    assert (e.value.status, e.value.code, e.value.type) == (502, "upstream_unreachable", "upstream_error")
    assert await runner.pool.ready_in("m") is None or True  # no cooldown for the unreachable account
    assert all(s.state == "ready" for s in await runner.pool.status("m"))


async def test_a_cancelled_request_reports_nothing_and_cools_nobody():
    runner, up, _, _, failures = setup(oauth("a"), bases=BASES[:1], real_time=True)
    up.on("at-a", Resp(200, chunks=[10.0]))
    task = asyncio.ensure_future(run(runner))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert failures == [] and all(s.state == "ready" for s in await runner.pool.status("m"))


def api_key(name: str) -> Account:
    return Account(name, name, "api_key", Path(f"/d/{name}.json"), api_key=f"key-{name}")


async def test_embeddings_skip_cloud_code_accounts_and_take_a_plain_json_answer():
    runner, up, *_ = setup(oauth("a"), api_key("k"))
    up.on("key-k", Resp(200, {"embeddings": [{"values": [0.1]}]}))
    winner = await runner.run("emb", False, {"requests": []}, CallContext("req-1", rpc="batchEmbedContents"))
    assert winner.account.id == "k" and winner.parsed == {"embeddings": [{"values": [0.1]}]}
    assert up.calls == [("key-k", "https://g/v1beta/models/emb")]  # the OAuth account was never asked


async def test_embeddings_without_an_api_key_account_say_so():
    runner, up, *_ = setup(oauth("a"))
    with pytest.raises(errors.GatewayError) as e:
        await runner.run("emb", False, {"requests": []}, CallContext("req-1", rpc="batchEmbedContents"))
    assert "API key" in e.value.message and up.calls == []


async def test_count_tokens_goes_to_cloud_code_as_gemini_cli_sends_it():
    runner, up, *_ = setup(oauth("a"))
    up.on("at-a", Resp(200, {"totalTokens": 7}))
    winner = await runner.run("m", False, {"contents": []}, CallContext("req-1", rpc="countTokens"))
    assert winner.parsed == {"totalTokens": 7} and up.calls == [("at-a", BASES[0])]


async def test_the_production_sender_runs_what_on_wait_schedules_while_the_call_waits():
    """``on_wait`` (the gateway's idle work, idle_work.py) is called as each call starts; what it puts on
    the loop runs while the call waits: this server answers only once that has run."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from antigravity_gw.settings import Timeouts
    from antigravity_gw.upstream.attempts import aiohttp_sender
    from antigravity_gw.upstream.dialects import UpstreamCall

    ran = asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        await asyncio.wait_for(ran.wait(), 5)
        return web.json_response({"got": (await request.read()).decode()})

    def on_wait() -> None:
        asyncio.get_running_loop().call_soon(ran.set)

    app = web.Application()
    app.router.add_post("/v1beta/models/m:generateContent", answer)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        send = aiohttp_sender(session, Timeouts(), on_wait=on_wait)
        url = str(server.make_url("/v1beta/models/m:generateContent"))
        response = await send(UpstreamCall(url, {"content-type": "application/json"}, b"ping"))
        assert response.status == 200 and await response.json() == {"got": "ping"}
