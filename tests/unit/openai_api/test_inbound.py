import pytest

from antigravity_gw import errors
from antigravity_gw.openai_api.inbound import check_declared_size, check_json_body, check_size


@pytest.mark.parametrize("length", [None, "", "abc", "10", "1024"])
def test_declared_sizes_within_the_limit_or_malformed_pass(length):
    check_declared_size(length, 1024)


def test_declared_size_over_the_limit_is_413():
    with pytest.raises(errors.PayloadTooLarge) as e:
        check_declared_size("1025", 1024)
    assert e.value.status == 413
    assert "1025" in e.value.message and "1024" in e.value.message


def test_received_size_over_the_limit_is_413():
    check_size(1024, 1024)
    with pytest.raises(errors.PayloadTooLarge):
        check_size(1025, 1024)


@pytest.mark.parametrize("ctype", [None, "application/json", "Application/JSON; charset=UTF-8",
                                   "application/x+json"])
def test_json_content_types_pass(ctype):
    check_json_body(ctype, b"{}")


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; b=1"])
def test_other_content_types_are_415(ctype):
    with pytest.raises(errors.UnsupportedMediaType) as e:
        check_json_body(ctype, b"{}")
    assert e.value.status == 415
    assert repr(ctype) in e.value.message


@pytest.mark.parametrize("body", [b"", b" \n\t"])
def test_empty_bodies_are_400(body):
    with pytest.raises(errors.InvalidRequest, match="empty"):
        check_json_body("application/json", body)
