"""What a POST body must be before any API parses it: within the size limit, and sent as JSON.

Size is checked twice: from ``Content-Length`` before the body is read (mitmproxy then reads and
drops it, so the client gets its 413 instead of a stalled upload, pitfall P18), and from the bytes
actually received for chunked uploads, which announce no length. Whether the bytes are valid JSON
for the route is the API's own parser's job; its errors name the field.
"""

from __future__ import annotations

from .. import errors

JSON_HINT = "send the body as JSON with 'Content-Type: application/json'"


def check_declared_size(content_length: str | None, limit: int) -> None:
    """413 when the announced length is over ``limit``; a malformed length is mitmproxy's to reject."""
    if content_length is None or not content_length.strip().isdigit():
        return
    check_size(int(content_length), limit)


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise errors.PayloadTooLarge(
            f"The request body is {size} bytes, over this gateway's limit of {limit} bytes (ag_body_limit). "
            "Send less (for example fewer or smaller inline images), or raise ag_body_limit.")


def check_json_body(content_type: str | None, body: bytes, *, multipart_ok: bool = False) -> None:
    """415 for a body declared as something other than JSON (``multipart_ok``: or a form), 400 for an
    empty one.

    A missing Content-Type is accepted: simple clients (``requests.post(data=...)``) omit it.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if multipart_ok and media == "multipart/form-data":
        media = ""
    if media and media != "application/json" and not media.endswith("+json"):
        raise errors.UnsupportedMediaType(f"Content-Type {content_type!r} is not supported: {JSON_HINT}.")
    if not body.strip():
        raise errors.InvalidRequest(f"The request body is empty: {JSON_HINT}, e.g. "
                                    '{"model": "gemini-2.5-flash", "messages": [...]}.')
