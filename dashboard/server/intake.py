"""How much of a request has arrived: read by the worker's poller before any thread serves it.

A pool thread is only handed a connection once its request is all there (head and body),
so a client that sends slowly, or stops half-way, holds no thread: its bytes wait in the
poller until the request is whole or its deadline passes. A body whose framing already
declares more than the server accepts is refused at once, without waiting for it.

This only decides *when* to hand a request over. gunicorn's own parser still reads it,
from the bytes gathered here, and answers any framing it finds wrong.
"""

import re
from dataclasses import dataclass
from enum import Enum

HEAD_END = b"\r\n\r\n"
# No browser's or Z-API's request head comes near this (gunicorn's own limits allow a
# request line of 4 KiB and header lines of 8 KiB each).
MAX_HEAD = 64 * 1024
# gunicorn's bound on one chunk-size line (its limit_request_field_size).
MAX_CHUNK_LINE = 8190
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,19}")


class Step(Enum):
    """What the poller does next with a connection, given the bytes it holds."""

    MORE = "more"  # wait for more bytes
    CONTINUE = "continue"  # the client waits for "100 Continue" before sending its body
    WHOLE = "whole"  # the request is all here: serve it
    OVERSIZE = "oversize"  # it declares, or sends, more than the server accepts: refuse it
    UNCLEAR = "unclear"  # framing only gunicorn's parser can judge: let it answer


@dataclass(frozen=True)
class Reading:
    """The next step, and the body size the request declares (0 when none is known)."""

    step: Step
    declared: int = 0


@dataclass(frozen=True)
class _Framing:
    length: int | None  # Content-Length, when that is the framing
    chunked: bool
    expects_continue: bool
    unclear: bool  # several or conflicting framing headers, or a malformed one


class Intake:
    """The bytes one connection has sent of its next request, and what they show so far.

    Each ``feed`` looks only at what is new, so a request sent a byte at a time costs
    time in proportion to its size, not to its square.
    """

    def __init__(self, body_limit: int) -> None:
        self.buffered = bytearray()
        self._continued = False  # whether the client was told to send its body
        self._body_limit = body_limit
        self._body_start: int | None = None
        self._framing: _Framing | None = None
        self._next_chunk = 0  # where the next chunk-size line starts, in ``buffered``
        self._declared = 0

    def feed(self, data: bytes) -> Reading:
        """Add ``data`` to what was received, and say what to do now."""
        searched = max(0, len(self.buffered) - len(HEAD_END) + 1)
        self.buffered += data
        if self._body_start is None:
            end = self.buffered.find(HEAD_END, searched)
            if end < 0:
                return Reading(Step.OVERSIZE if len(self.buffered) > MAX_HEAD else Step.MORE)
            self._body_start = self._next_chunk = end + len(HEAD_END)
            self._framing = _framing(bytes(self.buffered[:end]))
        reading = self._body_reading()
        if reading.step is Step.MORE and self._framing.expects_continue and not self._continued:
            self._continued = True  # asked for once: the caller sends "100 Continue"
            return Reading(Step.CONTINUE, reading.declared)
        return reading

    def header(self, name: bytes) -> bytes | None:
        """The value of the head's first header called ``name`` (lower case) received whole."""
        end = self._body_start if self._body_start is not None else len(self.buffered)
        # Only lines that ended: a value cut short by a stalled client is no value.
        lines = bytes(self.buffered[:end]).split(b"\r\n")[1:-1]
        for line in lines:
            field, _, value = line.partition(b":")
            if field.strip().lower() == name:
                return value.strip()
        return None

    def _body_reading(self) -> Reading:
        framing, received = self._framing, len(self.buffered) - self._body_start
        if framing.unclear:
            return Reading(Step.UNCLEAR)
        if framing.chunked:
            reading = self._chunks()
            # Chunk sizes, extensions and trailers may take more room than the data; beyond
            # twice the limit no acceptable request is still being sent. Bytes past a
            # request that is whole are the next pipelined requests', not its own.
            if reading.step is Step.MORE and received > 2 * self._body_limit + MAX_CHUNK_LINE:
                return Reading(Step.OVERSIZE, received)
            return reading
        if framing.length is None:
            return Reading(Step.WHOLE)  # a request without framing headers has no body
        if framing.length > self._body_limit:
            return Reading(Step.OVERSIZE, framing.length)
        return Reading(Step.WHOLE if received >= framing.length else Step.MORE, framing.length)

    def _chunks(self) -> Reading:
        """Walk the chunk-size lines not walked yet, adding up what they declare."""
        buffered = self.buffered
        while self._next_chunk <= len(buffered):
            line_end = buffered.find(b"\r\n", self._next_chunk)
            if line_end < 0:
                unfinished = len(buffered) - self._next_chunk > MAX_CHUNK_LINE
                return Reading(Step.UNCLEAR if unfinished else Step.MORE, self._declared)
            size_text = bytes(buffered[self._next_chunk : line_end]).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                return Reading(Step.UNCLEAR, self._declared)  # gunicorn says what is wrong
            size = int(size_text, 16)
            if size == 0:
                trailers = line_end + 2
                ended = buffered.startswith(b"\r\n", trailers) or HEAD_END in buffered[trailers:]
                return Reading(Step.WHOLE if ended else Step.MORE, self._declared)
            self._declared += size
            if self._declared > self._body_limit:
                return Reading(Step.OVERSIZE, self._declared)
            # Past the chunk's data and the CRLF after it; gunicorn checks that CRLF.
            self._next_chunk = line_end + 2 + size + 2
        return Reading(Step.MORE, self._declared)


def _framing(head: bytes) -> _Framing:
    lengths, codings, expects = [], [], False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.extend(coding.strip().lower() for coding in value.split(b","))
        elif name == b"expect":
            expects = value.lower() == b"100-continue"
    if codings:
        # Chunked must be the last coding; with a Content-Length beside it, the request
        # could be read two ways: gunicorn refuses both.
        chunked = codings[-1] == b"chunked"
        return _Framing(None, chunked, expects, unclear=bool(lengths) or not chunked)
    if not lengths:
        return _Framing(None, False, expects, unclear=False)
    if len(set(lengths)) > 1 or not _DIGITS.fullmatch(lengths[0]):
        return _Framing(None, False, expects, unclear=True)
    return _Framing(int(lengths[0]), False, expects, unclear=False)
