"""Job leases: one process at a time runs a scheduled job, whatever the number of instances.

A lease is a row, not a lock held by a connection: it is taken in one short transaction,
renewed while the job runs, and released at the end. A holder that dies leaves a lease
that simply expires, and the next process takes it over. Functions take a Session and
never commit.
"""

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from .database import upsert_insert
from .models import JobLease


def acquire(
    session: Session,
    name: str,
    holder: str,
    now: datetime,
    duration: timedelta,
    finished_before: datetime | None = None,
) -> bool:
    """Take lease ``name`` for ``holder`` until ``now + duration`` if nobody holds it.

    With ``finished_before``, only if the job last finished before then (or never did):
    the check and the taking are one statement, so two processes cannot both find the
    job due and both run it.
    """
    insert = upsert_insert(session.get_bind().dialect.name, JobLease.__table__)
    session.execute(insert.values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    conditions = [
        JobLease.name == name,
        or_(JobLease.expires_at.is_(None), JobLease.expires_at <= now),
    ]
    if finished_before is not None:
        conditions.append(
            or_(JobLease.last_finished_at.is_(None), JobLease.last_finished_at < finished_before)
        )
    taken = session.execute(
        update(JobLease).where(*conditions).values(holder=holder, expires_at=now + duration)
    )
    return taken.rowcount == 1


def renew(session: Session, name: str, holder: str, now: datetime, duration: timedelta) -> bool:
    """Extend ``holder``'s lease to ``now + duration``; False if it expired and was taken over."""
    renewed = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder, JobLease.expires_at > now)
        .values(expires_at=now + duration)
    )
    return renewed.rowcount == 1


def release(session: Session, name: str, holder: str, finished_at: datetime | None) -> None:
    """Give the lease up; ``finished_at`` records a completed run for the schedule.

    The holder's name stays in the row, so an operator can see who ran the job last.
    """
    values: dict = {"expires_at": None}
    if finished_at is not None:
        values["last_finished_at"] = finished_at
    session.execute(
        update(JobLease).where(JobLease.name == name, JobLease.holder == holder).values(**values)
    )


def get(session: Session, name: str) -> JobLease | None:
    """The lease row of job ``name``, or None before its first run."""
    return session.get(JobLease, name)
