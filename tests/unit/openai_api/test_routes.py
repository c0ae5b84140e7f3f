import pytest

from antigravity_gw import errors
from antigravity_gw.openai_api.routes import Route, RouteKind, match_route


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/v1/v1/chat/completions",
                                  "/v1/chat/completions/", "/v1/chat/completions?x=1",
                                  "//v1//chat/completions"])
def test_chat_route_is_found_with_or_without_v1(path):
    assert match_route("POST", path) == Route(RouteKind.CHAT)


def test_model_route_carries_the_id():
    assert match_route("GET", "/v1/models/gemini-2.5-flash") == Route(RouteKind.MODEL, "gemini-2.5-flash")


@pytest.mark.parametrize(("path", "meant"), [
    ("/v1/chat/completions/responses", "/v1/chat/completions"),
    ("/v1/chat/completions/chat/completions", "/v1/chat/completions"),
    ("/v1/responses/v1/responses", "/v1/responses"),
    ("/api/v1/chat/completions", "/v1/chat/completions"),
])
def test_stacked_paths_get_a_404_that_names_path_and_likely_route(path, meant):
    with pytest.raises(errors.UnknownRoute) as e:
        match_route("POST", path)
    assert e.value.status == 404
    assert repr(path) in e.value.message
    assert repr(meant) in e.value.message
    assert "base URL" in e.value.message


def test_wrong_method_is_405_with_allow():
    with pytest.raises(errors.MethodNotAllowed) as e:
        match_route("GET", "/v1/chat/completions")
    assert e.value.status == 405
    assert e.value.headers == {"allow": "POST"}


@pytest.mark.parametrize(("path", "expected"), [("/healthz", True), ("/v1/healthz", True), ("/health", True),
                                                ("/healthz/", True), ("/v1/models", False),
                                                ("/healthzz", False)])
def test_health_paths(path, expected):
    from antigravity_gw.openai_api.routes import is_health_path
    assert is_health_path(path) is expected


def test_the_404_quotes_the_base_url_the_client_should_use():
    with pytest.raises(errors.UnknownRoute) as e:
        match_route("POST", "/v1/chat/completions/responses", "http://127.0.0.1:9000/v1")
    assert "It most likely meant '/v1/responses'" in e.value.message
    assert ("appended '/responses' to a base URL that already ends in the route '/v1/chat/completions'"
            in e.value.message)
    assert "'http://127.0.0.1:9000/v1'" in e.value.message


def test_a_path_with_no_known_route_lists_the_routes():
    with pytest.raises(errors.UnknownRoute) as e:
        match_route("GET", "/v1/engines")
    assert "/v1/chat/completions" in e.value.message and "base URL" in e.value.message


def test_the_base_url_is_worked_out_only_for_a_404():
    asked: list[int] = []

    def base_url() -> str:
        asked.append(1)
        return "http://127.0.0.1:8045/v1"

    assert match_route("POST", "/v1/chat/completions", base_url) == Route(RouteKind.CHAT)
    assert not asked
    with pytest.raises(errors.UnknownRoute) as e:
        match_route("POST", "/v1/chat/completions/responses", base_url)
    assert "'http://127.0.0.1:8045/v1'" in e.value.message and asked == [1]


@pytest.mark.parametrize(("method", "path", "kind", "param"), [
    ("GET", "/v1/responses/resp_1", RouteKind.RESPONSE, "resp_1"),
    ("DELETE", "/responses/resp_1", RouteKind.RESPONSE, "resp_1"),
    ("GET", "/v1/responses/resp_1/input_items?limit=2", RouteKind.RESPONSE_INPUT_ITEMS, "resp_1"),
    ("POST", "/v1/v1/responses/resp_1/cancel", RouteKind.RESPONSE_CANCEL, "resp_1"),
    ("POST", "/v1/responses/input_tokens", RouteKind.INPUT_TOKENS, ""),
    ("POST", "/v1/responses/compact", RouteKind.COMPACT, ""),
    ("POST", "/v1/embeddings", RouteKind.EMBEDDINGS, ""),
])
def test_the_responses_sub_routes_and_embeddings(method, path, kind, param):
    assert match_route(method, path) == Route(kind, param)


def test_a_stored_response_route_with_the_wrong_method_is_405():
    with pytest.raises(errors.MethodNotAllowed) as e:
        match_route("POST", "/v1/responses/resp_1")
    assert e.value.headers == {"allow": "GET, DELETE"}


@pytest.mark.parametrize(("path", "kind"), [
    ("/v1/messages", RouteKind.MESSAGES), ("/v1/v1/messages", RouteKind.MESSAGES),
    ("/messages", RouteKind.MESSAGES),
    ("/v1/messages/count_tokens", RouteKind.COUNT_TOKENS), ("/v1/messages?beta=true", RouteKind.MESSAGES),
])
def test_the_messages_routes(path, kind):
    assert match_route("POST", path) == Route(kind)


@pytest.mark.parametrize("path", ["/v1/messages/v1/messages", "/v1/messages/foo", "/api/v1/messages"])
def test_a_stacked_messages_path_names_anthropic_base_url_fix(path):
    with pytest.raises(errors.UnknownRoute) as e:
        match_route("POST", path, "http://127.0.0.1:8080/v1")
    assert "'/v1/messages'" in e.value.message
    assert "ANTHROPIC_BASE_URL" in e.value.message and "'http://127.0.0.1:8080'" in e.value.message
