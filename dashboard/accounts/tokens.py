"""Personal API tokens: create, list, revoke, and whose a token is. Take a Session, never commit."""

from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..models import ApiToken, User, utcnow
from ..translatable import N_
from .users import AccountError, SessionUser, new_token, token_digest

# Tells a dashboard token apart from other secrets in a script or a leaked file.
PREFIX = "zd_"
# The message for reaching the cap names this number.
MAX_TOKENS_PER_USER = 20
MAX_NAME_LENGTH = 64
# Recording every use would turn each API read into a write; the minute is enough to see
# which tokens are still in use.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenUser(NamedTuple):
    """The user a token speaks for, and whether its use is due to be recorded."""

    user: SessionUser
    token_id: int
    use_due: bool


def create(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """Add a token called ``name`` for ``user``; return it and its secret, to be shown once."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise AccountError(N_("Name the token with 1 to 64 printable characters."))
    if _count(session, user.id) >= MAX_TOKENS_PER_USER:
        raise AccountError(
            N_("You already have 20 API tokens. Revoke one you no longer use first.")
        )
    secret = PREFIX + new_token()
    token = ApiToken(user_id=user.id, name=name, token_hash=token_digest(secret), hint=secret[-4:])
    session.add(token)
    session.flush()
    return token, secret


def for_user(session: Session, user_id: int) -> list[ApiToken]:
    """The tokens of a user, newest first."""
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    return list(session.scalars(query))


def revoke(session: Session, user_id: int, token_id: int) -> bool:
    """Delete one of the user's own tokens; False if the user has no such token."""
    result = session.execute(
        delete(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
    )
    return result.rowcount > 0


def user_for_token(session: Session, secret: str) -> TokenUser | None:
    """The enabled user whose token ``secret`` is, or None."""
    found = session.execute(
        select(User, ApiToken.id, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_digest(secret), User.active)
    ).first()
    if found is None:
        return None
    user, token_id, last_used_at = found
    # No session backs a token: the request is signed in for itself only.
    due = last_used_at is None or last_used_at <= utcnow() - LAST_USED_PRECISION
    return TokenUser(SessionUser.of(user, session_token=None), token_id, due)


def record_use(session: Session, token_id: int) -> None:
    """Stamp the token as used now, unless another request did so within the minute."""
    now = utcnow()
    stale = or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_PRECISION)
    session.execute(update(ApiToken).where(ApiToken.id == token_id, stale).values(last_used_at=now))


def _count(session: Session, user_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user_id)
    )
