"""A message's timeline as its page tells it: the steps in time order, the times between
them, Z-API's lag on each callback, and the words of a reply. Pure, no I/O.
"""

from datetime import datetime, timedelta
from typing import NamedTuple

from .. import deliveries, payloads
from ..models import Delivery, Message
from . import states


class Reached(NamedTuple):
    """A step the message reached: when it was first seen, and by how many callbacks."""

    state: str
    at: datetime
    count: int


def steps(message: Message) -> list[Reached]:
    """Every step ``message`` reached, in time order (the road's order breaks ties)."""
    reached = [
        Reached(state, at, getattr(message, f"{state}_count"))
        for state in states.STATES
        if (at := getattr(message, f"{state}_at")) is not None
    ]
    return sorted(reached, key=lambda step: step.at)


def time_to_phone(message: Message) -> timedelta | None:
    """From handing it over (queued, else sent) to the customer's phone, when both are known."""
    start = message.queued_at or message.sent_at
    return _between(start, message.received_at)


def time_to_read(message: Message) -> timedelta | None:
    """From the customer's phone to read, when both are known."""
    return _between(message.received_at, message.read_at)


def zapi_lag(delivery: Delivery) -> timedelta | None:
    """How long after Z-API's stamp a callback reached us; None when the stamp is no real time."""
    stamped = states.plausible_time(deliveries.momment(delivery), delivery.received_at)
    return None if stamped is None else delivery.received_at - stamped


def words(delivery: Delivery) -> str | None:
    """What a stored message said (its text, or a caption or file name), when it can be read."""
    try:
        return payloads.parse(delivery.raw.encode("utf-8", "surrogatepass")).content
    except payloads.InvalidCallback:
        # A row stored before the checks, or written by hand: its words stay in the raw body.
        return None


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    # Steps are stamped by different clocks (Z-API's, the phone's); a negative span says
    # nothing about the customer, so it is left out rather than shown as a time.
    if start is None or end is None or end < start:
        return None
    return end - start
