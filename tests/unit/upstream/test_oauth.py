"""upstream/oauth.py: single-flight refresh, saving before use, invalid_grant, project lookup."""

import asyncio

import pytest

from antigravity_gw.upstream.accounts import Account
from antigravity_gw.upstream.oauth import (
    RefreshFailed,
    SingleFlight,
    TokenService,
    project_from_load_code_assist,
)

NOW = 1_800_000_000.0


class FakeEndpoint:
    """The token endpoint: scripted answers, a delay, and a log of the refresh tokens it was sent."""

    def __init__(self, *answers, delay: float = 0.0, events: list | None = None) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.calls: list[str] = []
        self.events = events if events is not None else []
        self.issued = 0

    async def __call__(self, refresh_token: str):
        self.calls.append(refresh_token)
        await asyncio.sleep(self.delay)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        self.issued += 1
        self.events.append("token issued")
        return 200, {"access_token": f"ya29.{self.issued}", "expires_in": 3599}


class FakeStore:
    def __init__(self, events: list, on_disk: str = "") -> None:
        self.events = events
        self.on_disk = on_disk
        self.saved: list[tuple[str, str, str]] = []
        self.disabled: list[tuple[bool, str, int]] = []

    async def save_tokens(self, account: Account) -> None:
        self.events.append("saved")
        self.saved.append((account.access_token, account.refresh_token, account.project_id))

    async def save_disabled(self, account: Account) -> None:
        self.disabled.append((account.disabled, account.disabled_reason, account.disabled_at))

    async def stored_refresh_token(self, account: Account) -> str:
        return self.on_disk or account.refresh_token


def expired(name: str = "a", **kw) -> Account:
    return Account(name, f"{name}@x", "oauth", None, access_token="ya29.old", refresh_token="rt-1",
                   expiry_timestamp=NOW - 1, **kw)


def service(endpoint, events=None, **store_kw):
    events = events if events is not None else []
    store = FakeStore(events, **store_kw)
    return TokenService(endpoint, store, clock=lambda: NOW), store


async def test_21_concurrent_requests_on_an_expired_token_make_one_refresh_call():
    endpoint = FakeEndpoint(delay=0.05)
    tokens, store = service(endpoint)
    account = expired()
    got = await asyncio.gather(*(tokens.credential(account) for _ in range(21)))
    assert got == ["ya29.1"] * 21
    assert endpoint.calls == ["rt-1"]
    assert account.expiry_timestamp == NOW + 3599
    assert len(store.saved) == 1


async def test_a_fresh_token_is_used_as_is_and_the_margin_counts_as_expired():
    endpoint = FakeEndpoint()
    tokens, _ = service(endpoint)
    fresh = Account("a", "a@x", "oauth", None, access_token="ya29.ok", refresh_token="rt",
                    expiry_timestamp=NOW + 3000)
    assert await tokens.credential(fresh) == "ya29.ok"
    soon = Account("b", "b@x", "oauth", None, access_token="ya29.old", refresh_token="rt",
                   expiry_timestamp=NOW + 60)
    assert await tokens.credential(soon) == "ya29.1"  # 60 s left < the 120 s margin
    key = Account("k", "k", "api_key", None, api_key="AIza")
    assert await tokens.credential(key) == "AIza"
    assert endpoint.calls == ["rt"]


async def test_a_rejected_token_is_refreshed_once_however_many_requests_saw_the_401():
    endpoint = FakeEndpoint()
    tokens, _ = service(endpoint)
    account = Account("a", "a@x", "oauth", None, access_token="ya29.rejected", refresh_token="rt",
                      expiry_timestamp=NOW + 3000)
    first = await tokens.credential(account, stale="ya29.rejected")
    again = await tokens.credential(account, stale="ya29.rejected")  # another request's 401, same token
    assert first == again == "ya29.1"
    assert endpoint.calls == ["rt"]


async def test_a_rotated_refresh_token_is_saved_before_the_access_token_is_used():
    events: list[str] = []
    endpoint = FakeEndpoint((200, {"access_token": "ya29.new", "refresh_token": "rt-2", "expires_in": 100}),
                            events=events)
    tokens, store = service(endpoint, events)
    account = expired()
    token = await tokens.credential(account)
    events.append("used")
    assert events == ["saved", "used"]
    assert store.saved == [("ya29.new", "rt-2", "")]
    assert (token, account.refresh_token, account.retired_refresh_tokens) == ("ya29.new", "rt-2", {"rt-1"})


async def test_invalid_grant_disables_the_account_with_reason_and_time():
    endpoint = FakeEndpoint((400, {"error": "invalid_grant",
                                   "error_description": "Token has been expired or revoked."}))
    tokens, store = service(endpoint)
    account = expired()
    with pytest.raises(RefreshFailed) as e:
        await tokens.credential(account)
    assert e.value.permanent
    assert store.disabled == [(True, "invalid_grant: Token has been expired or revoked.", int(NOW))]
    assert not account.usable


async def test_invalid_grant_tries_a_refresh_token_rotated_by_another_program_first():
    endpoint = FakeEndpoint((400, {"error": "invalid_grant"}))
    tokens, store = service(endpoint, on_disk="rt-from-manager")
    account = expired()
    assert await tokens.credential(account) == "ya29.1"
    assert endpoint.calls == ["rt-1", "rt-from-manager"]
    assert store.disabled == [] and account.refresh_token == "rt-from-manager"


@pytest.mark.parametrize("answer", [
    (500, {"error": "internal_failure"}),
    (401, {"error": "invalid_client", "error_description": "Unauthorized"}),
    (200, {"no": "token"}),
    RefreshFailed("token endpoint unreachable: ClientConnectorError"),
])
async def test_other_refresh_failures_are_temporary(answer):
    tokens, store = service(FakeEndpoint(answer))
    account = expired()
    with pytest.raises(RefreshFailed) as e:
        await tokens.credential(account)
    assert not e.value.permanent and account.usable and store.disabled == []


async def test_no_refresh_token_and_an_expired_access_token():
    tokens, _ = service(FakeEndpoint())
    account = expired()
    account.refresh_token = ""
    with pytest.raises(RefreshFailed, match="no refresh token"):
        await tokens.credential(account)


async def test_a_cancelled_caller_does_not_cancel_the_refresh_the_others_wait_for():
    endpoint = FakeEndpoint(delay=0.05)
    tokens, _ = service(endpoint)
    account = expired()
    loop = asyncio.get_running_loop()
    impatient = loop.create_task(tokens.credential(account))
    patient = loop.create_task(tokens.credential(account))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == "ya29.1"
    assert endpoint.calls == ["rt-1"]


async def test_single_flight_runs_again_after_a_failure():
    flights = SingleFlight()
    runs = []

    async def fail():
        runs.append(1)
        raise RefreshFailed("x")

    for _ in range(2):
        with pytest.raises(RefreshFailed):
            await flights.run("k", fail)
    assert len(runs) == 2 and len(flights) == 0


@pytest.mark.parametrize(("answer", "project"), [
    ({"cloudaicompanionProject": "swift-core-abc12", "gcpManaged": False}, "swift-core-abc12"),
    ({"cloudaicompanionProject": {"id": "proj-obj", "name": "projects/proj-obj"}}, "proj-obj"),
    ({"currentTier": {"id": "free-tier"}}, ""),
    ({"cloudaicompanionProject": None}, ""),
])
def test_project_from_load_code_assist(answer, project):
    assert project_from_load_code_assist(answer) == project
