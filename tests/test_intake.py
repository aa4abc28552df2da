"""When the worker's poller hands a request to a thread: dashboard/server/intake.py."""

import pytest

from dashboard.server.intake import MAX_HEAD, Intake, Step

LIMIT = 64 * 1024
POST = b"POST /webhooks/t HTTP/1.1\r\nHost: x\r\n"


def reading_of(*pieces: bytes):
    """The last reading of an intake fed ``pieces`` one after the other."""
    intake = Intake(LIMIT)
    for piece in pieces:
        reading = intake.feed(piece)
    return reading


def chunked(*chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + end


@pytest.mark.parametrize(
    ("raw", "step"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", Step.MORE),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Step.WHOLE),
        (b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", Step.WHOLE),
        (POST + b"Content-Length: 5\r\n\r\nabc", Step.MORE),
        (POST + b"Content-Length: 5\r\n\r\nabcde", Step.WHOLE),
        (POST + b"content-length: 0\r\n\r\n", Step.WHOLE),
        (POST + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1), Step.OVERSIZE),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"abc"), Step.WHOLE),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"abc", end=b"0\r\n"), Step.MORE),
        (
            POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"a", end=b"0\r\nX: 1\r\n\r\n"),
            Step.WHOLE,
        ),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", Step.MORE),
        (POST + b"Transfer-Encoding: chunked\r\n\r\nffffffffff\r\nab", Step.OVERSIZE),
        (
            POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*[b"x" * 16384] * 5),
            Step.OVERSIZE,
        ),
        (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab", Step.UNCLEAR),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 9000, Step.UNCLEAR),
        (POST + b"Transfer-Encoding: gzip\r\n\r\nabc", Step.UNCLEAR),
        (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", Step.UNCLEAR),
        (POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", Step.UNCLEAR),
        (POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", Step.WHOLE),
        (POST + b"Content-Length: -3\r\n\r\nabc", Step.UNCLEAR),
        (POST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n", Step.CONTINUE),
        (POST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", Step.WHOLE),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, Step.OVERSIZE),
    ],
)
def test_each_framing_gets_its_step(raw, step):
    assert reading_of(raw).step is step


def test_a_request_sent_a_byte_at_a_time_is_read_the_same_as_whole():
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"hello", b" world")
    intake = Intake(LIMIT)
    steps = [intake.feed(raw[i : i + 1]).step for i in range(len(raw))]
    assert set(steps[:-1]) == {Step.MORE}
    assert steps[-1] is Step.WHOLE


def test_the_declared_size_is_what_the_framing_adds_up_to():
    assert reading_of(POST + b"Content-Length: 70000\r\n\r\n").declared == 70000
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"x" * 40000, b"y" * 40000)
    assert reading_of(raw).declared == 80000


def test_continue_is_asked_for_once():
    intake = Intake(LIMIT)
    assert (
        intake.feed(POST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n").step
        is Step.CONTINUE
    )
    assert intake.feed(b"ab").step is Step.MORE
    assert intake.feed(b"c").step is Step.WHOLE


def test_sending_far_more_than_the_limit_is_refused_even_in_tiny_chunks():
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * (LIMIT // 2)
    assert reading_of(raw).step is Step.OVERSIZE


@pytest.mark.parametrize(
    "request_bytes",
    [
        POST + b"Content-Length: 5\r\n\r\nhello",
        POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"hello"),
    ],
    ids=["content-length", "chunked"],
)
def test_a_small_request_is_whole_however_many_pipelined_ones_follow_it(request_bytes):
    # Far more than twice the limit in all, but each request is small: the bytes after
    # the first one are the next requests', not an oversize body.
    burst = request_bytes * (3 * LIMIT // len(request_bytes))
    reading = reading_of(burst)
    assert reading.step is Step.WHOLE
    assert reading.declared == 5


@pytest.mark.parametrize(
    ("pieces", "value"),
    [
        ((POST + b"Accept-Language: en\r\nContent-Length: 5\r\n\r\nab",), b"en"),
        ((POST + b"accept-language:  pt-BR, en;q=0.5 \r\n",), b"pt-BR, en;q=0.5"),
        ((POST + b"Accept-Lang", b"uage: en\r\nX: y"), b"en"),
        # A line still being sent, or a header inside the body, is no header.
        ((POST + b"Accept-Language: e",), None),
        ((POST + b"Content-Length: 20\r\n\r\nAccept-Language: en\r\n",), None),
        ((POST + b"\r\n",), None),
    ],
)
def test_a_header_is_read_from_the_lines_of_the_head_that_arrived(pieces, value):
    intake = Intake(LIMIT)
    for piece in pieces:
        intake.feed(piece)
    assert intake.header(b"accept-language") == value
