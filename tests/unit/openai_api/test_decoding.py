import gzip
import zlib

import brotli
import pytest

from antigravity_gw import errors
from antigravity_gw.openai_api.decoding import codings, decode_body

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
ENCODE = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}


def test_codings_are_listed_in_applied_order_without_identity():
    assert codings(None) == [] and codings("") == [] and codings("identity") == []
    assert codings(" GZIP , identity,br") == ["gzip", "br"]
    assert codings("x-gzip") == ["gzip"]


@pytest.mark.parametrize("coding", list(ENCODE))
def test_each_coding_decodes(coding):
    assert decode_body(ENCODE[coding](BODY), coding, len(BODY)) == BODY


def test_no_coding_leaves_the_body_as_is():
    assert decode_body(BODY, None, 10) is BODY  # the limit on raw bytes is checked elsewhere


@pytest.mark.parametrize("coding", list(ENCODE))
def test_one_byte_over_the_limit_is_413(coding):
    with pytest.raises(errors.PayloadTooLarge) as e:
        decode_body(ENCODE[coding](BODY), coding, len(BODY) - 1)
    assert e.value.status == 413 and "ag_body_limit" in e.value.message


@pytest.mark.parametrize("coding", list(ENCODE))
def test_a_bomb_stops_at_the_limit(coding):
    bomb = ENCODE[coding](bytes(64 * 1024 * 1024))
    with pytest.raises(errors.PayloadTooLarge):
        decode_body(bomb, coding, 1024)


def test_raw_deflate_without_zlib_wrapper_is_accepted():
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decode_body(c.compress(BODY) + c.flush(), "deflate", 1000) == BODY


def test_several_gzip_members_and_zstd_frames_are_all_decoded():
    assert decode_body(gzip.compress(BODY) * 2, "gzip", 1000) == BODY * 2
    assert decode_body(zstd.compress(BODY) * 2, "zstd", 1000) == BODY * 2


def test_stacked_codings_are_undone_last_first():
    assert decode_body(brotli.compress(gzip.compress(BODY)), "gzip, br", 1000) == BODY


@pytest.mark.parametrize("coding", list(ENCODE))
@pytest.mark.parametrize("damage", [lambda b: b[:-4], lambda b: b"\xffjunk" + b, lambda b: b[:1]])
def test_corrupt_or_truncated_data_is_400(coding, damage):
    with pytest.raises(errors.InvalidRequest) as e:
        decode_body(damage(ENCODE[coding](BODY)), coding, 1000)
    assert e.value.status == 400 and coding in e.value.message


def test_trailing_data_after_a_deflate_stream_is_400():
    with pytest.raises(errors.InvalidRequest):
        decode_body(zlib.compress(BODY) + b"extra", "deflate", 1000)


def test_an_unknown_coding_is_415_with_accept_encoding():
    with pytest.raises(errors.UnsupportedMediaType) as e:
        decode_body(BODY, "gzip, compress", 1000)
    assert e.value.status == 415 and "'compress'" in e.value.message
    assert e.value.headers == {"accept-encoding": "gzip, deflate, br, zstd"}


def test_too_many_stacked_codings_are_400():
    with pytest.raises(errors.InvalidRequest):
        decode_body(BODY, "gzip, gzip, gzip, gzip, gzip", 1000)


def test_a_zstd_frame_asking_for_a_window_over_8_mib_is_400():
    big_window = zstd.compress(bytes(16 << 20), options={zstd.CompressionParameter.window_log: 27})
    with pytest.raises(errors.InvalidRequest):
        decode_body(big_window, "zstd", 1 << 30)
