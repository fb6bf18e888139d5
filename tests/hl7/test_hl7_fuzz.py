"""Property tests: whatever bytes arrive, the parser raises only its documented errors, and MLLP
framing does not depend on how TCP splits the stream.
"""

from __future__ import annotations

import pytest
from hl7_samples import cr_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drimbox.hl7 import Hl7Error, build_ack, encode_ack, parse_report, salvage_header
from drimbox.hl7.errors import AckCode
from drimbox.hl7.mllp import Frame, FrameDecoder, frame
from drimbox.reports import ImagingReport

BASE = cr_message("C-MDM")
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_refuse(data: bytes) -> None:
    try:
        report = parse_report(data)
    except Hl7Error as error:
        # every refusal can be acknowledged, whatever the bytes
        header = salvage_header(data)
        assert encode_ack(build_ack(header, error.ack_code, error), header).startswith(b"MSH")
        assert error.ack_code in (AckCode.ERROR, AckCode.REJECT)
    else:
        assert isinstance(report, ImagingReport)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    _parse_or_refuse(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_msh(data: bytes) -> None:
    _parse_or_refuse(BASE.split(b"\r", 1)[0] + b"\r" + data)


_HL7_ALPHABET = st.sampled_from(
    [
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"\r",
        b"\n",
        b"MSH",
        b"PID",
        b"OBX",
        b"ED",
        b"ORC",
        b"PRT",
        b"TXA",
        b"Base64",
        b"VALI",
        b"INS",
        b"PI",
        b"L",
        b"D",
        b"1",
        b"A",
        b"\xc3\xa9",
        b"\xff",
        b"\\X41\\",
        b"\\.sp\\",
        b"\\E\\",
    ]
)


@FUZZ
@given(st.lists(_HL7_ALPHABET, max_size=200))
def test_hl7_shaped_noise(tokens: list[bytes]) -> None:
    _parse_or_refuse(BASE.split(b"\r", 1)[0] + b"\r" + b"".join(tokens))


@FUZZ
@given(st.data())
def test_mutated_valid_message(data: st.DataObject) -> None:
    message = bytearray(BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(message) - 1))
        stop = data.draw(st.integers(start, min(len(message), start + 40)))
        message[start:stop] = data.draw(st.one_of(st.binary(max_size=20), _HL7_ALPHABET))
    _parse_or_refuse(bytes(message))


@FUZZ
@given(
    st.lists(st.binary(max_size=300).filter(lambda b: b"\x0b" not in b and b"\x1c" not in b), max_size=5),
    st.lists(st.integers(1, 200), min_size=1, max_size=50),
)
def test_framing_does_not_depend_on_chunking(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    decoder = FrameDecoder(max_size=10_000)
    events = []
    position = 0
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if position >= len(stream):
            break
        events += decoder.feed(stream[position : position + size])
        position += size
    events += decoder.feed(stream[position:])
    assert [e.payload for e in events if isinstance(e, Frame)] == messages
    assert all(isinstance(e, Frame) for e in events)
    assert not decoder.in_frame


@pytest.mark.parametrize("size", [0, 1, 100, 10_000])
def test_frames_at_the_size_limit(size: int) -> None:
    decoder = FrameDecoder(max_size=100)
    (event,) = decoder.feed(frame(b"x" * size))
    assert isinstance(event, Frame) == (size <= 100)


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_framing_never_fails_on_any_stream(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_size=100)
    for chunk in chunks:
        for event in decoder.feed(chunk):
            if isinstance(event, Frame):
                assert len(event.payload) <= 100
                assert b"\x0b" not in event.payload and b"\x1c" not in event.payload
    assert len(decoder.pending_head()) <= 4096
