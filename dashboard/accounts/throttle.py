"""Sign-in throttling, counted in the database so every worker and instance agrees."""

import math
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..models import LoginAttempt, utcnow

MAX_FAILURES = 10
WINDOW = timedelta(minutes=1)


def admit(session: Session, address: str, username: str) -> tuple[int | None, int]:
    """Record a sign-in attempt, or refuse it.

    Returns ``(attempt_id, 0)`` when the attempt may go ahead, or ``(None, seconds)`` when
    the address or the username already failed MAX_FAILURES times within WINDOW.
    The caller must run this in a write transaction so the check and the insert are one.
    """
    now = utcnow()
    address, username = address[:64], username[:64]
    session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < now - WINDOW))
    for column, value in ((LoginAttempt.address, address), (LoginAttempt.username, username)):
        oldest, failures = session.execute(
            select(func.min(LoginAttempt.attempted_at), func.count()).where(column == value)
        ).one()
        if failures >= MAX_FAILURES:
            return None, max(1, math.ceil((oldest + WINDOW - now).total_seconds()))
    attempt = LoginAttempt(address=address, username=username)
    session.add(attempt)
    session.flush()
    return attempt.id, 0


def forget(session: Session, attempt_id: int) -> None:
    """Drop an attempt that succeeded: only failures count."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt_id))
