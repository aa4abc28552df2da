"""Refused webhook requests: kept, scrubbed of secrets, for an admin to see what was sent."""

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import logs
from .models import RejectedRequest


def record(
    session: Session,
    status_code: int,
    reason: str,
    content_type: str | None,
    body: bytes,
    keep: int,
) -> None:
    """Keep a refused request, its body cut at ``keep`` bytes; secrets in it are replaced."""
    content_type = logs.scrub(content_type)[:255] if content_type else None
    session.add(
        RejectedRequest(
            status_code=status_code,
            reason=logs.scrub(reason),
            content_type=content_type,
            # Scrubbed before it is cut, so that no cut leaves the start of a secret behind.
            body=logs.scrub_bytes(body)[:keep],
        )
    )


def count_older_than(session: Session, cutoff: datetime) -> int:
    """How many refused requests arrived before ``cutoff``."""
    return session.scalar(select(func.count()).where(RejectedRequest.received_at < cutoff))


def count_since(session: Session, since: datetime) -> int:
    """How many requests were refused at or after ``since``."""
    return session.scalar(select(func.count()).where(RejectedRequest.received_at >= since))


def prune_batch(session: Session, cutoff: datetime, size: int) -> int:
    """Delete up to ``size`` refused requests received before ``cutoff``; return how many."""
    old = select(RejectedRequest.id).where(RejectedRequest.received_at < cutoff).limit(size)
    forgotten = delete(RejectedRequest).where(RejectedRequest.id.in_(old))
    return session.execute(forgotten.execution_options(synchronize_session=False)).rowcount


def newest(session: Session, before: int | None, size: int) -> list[RejectedRequest]:
    """Up to ``size`` refused requests, newest first, those below id ``before`` if given."""
    query = select(RejectedRequest).order_by(RejectedRequest.id.desc()).limit(size)
    if before is not None:
        query = query.where(RejectedRequest.id < before)
    return list(session.scalars(query))


def preview(body: bytes | None, characters: int) -> tuple[str, bool]:
    """The start of ``body`` as text for a page, and whether there is more of it.

    Bytes that are no UTF-8 show as U+FFFD: the page is for reading; the exact bytes are
    a download.
    """
    text = (body or b"").decode("utf-8", "replace")
    return text[:characters], len(text) > characters
