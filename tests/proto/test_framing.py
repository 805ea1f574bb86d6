"""Length-prefixed frames."""

import pytest

from proto.framing import HEADER, MAX_FRAME_BYTES, FrameDecoder, FrameError, encode_frame


def test_encode_prefixes_big_endian_length():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_default_limit_is_64_mib():
    assert MAX_FRAME_BYTES == 64 * 1024 * 1024


def test_many_frames_in_one_chunk():
    payloads = [b"", b"a", b"bc" * 100, bytes(range(256))]
    data = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    assert decoder.feed(data) == payloads
    assert decoder.buffered == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_frames_split_across_chunks(chunk):
    payloads = [b"hello", b"", b"x" * 50, b"world"]
    data = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += decoder.feed(data[i : i + chunk])
    assert got == payloads
    assert decoder.buffered == 0


def test_partial_frame_is_kept_until_complete():
    decoder = FrameDecoder()
    frame = encode_frame(b"payload")
    assert decoder.feed(frame[:2]) == []
    assert decoder.feed(frame[2:6]) == []
    assert decoder.buffered == 6
    assert decoder.feed(frame[6:] + frame[:1]) == [b"payload"]
    assert decoder.buffered == 1


def test_oversized_frame_is_refused_from_its_header():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(encode_frame(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(FrameError, match="frame of 11 bytes exceeds the limit 10"):
        decoder.feed(HEADER.pack(11))


def test_oversized_payload_is_refused_when_encoding():
    with pytest.raises(FrameError, match="exceeds the limit 3"):
        encode_frame(b"abcd", max_frame_bytes=3)


def test_many_small_frames_decode_in_linear_time():
    # 100k frames in one chunk: quadratic buffer copying would take minutes here.
    data = encode_frame(b"ab") * 100_000
    assert len(FrameDecoder().feed(data)) == 100_000
