"""Users, passwords, sessions and the first-run setup link. Takes a Session, never commits."""

import hashlib
import secrets
from datetime import timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..models import SetupToken, User, UserSession, utcnow
from ..translatable import N_

ROLES = ("admin", "viewer")
MIN_PASSWORD_LENGTH = 10
PASSWORD_TOO_SHORT = N_("A password needs at least 10 characters.")
SETUP_LINK_LIFETIME = timedelta(hours=24)

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_hasher = PasswordHasher()
# Verified against when the username does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A change to accounts that is not allowed; its message is an untranslated msgid."""


class SessionUser(NamedTuple):
    """The signed-in user of one session, as the web layer sees it."""

    id: int
    username: str
    role: str
    language: str | None
    session_token: str

    @classmethod
    def of(cls, user: User, session_token: str) -> "SessionUser":
        """The session view of ``user`` signed in with ``session_token``."""
        return cls(user.id, user.username, user.role, user.language, session_token)


def normalise_username(username: str) -> str:
    """The form usernames are stored and compared in."""
    return username.strip().casefold()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def count_users(session: Session) -> int:
    """How many accounts exist, enabled or not."""
    return session.scalar(select(func.count()).select_from(User))


def find_user(session: Session, username: str) -> User | None:
    """The user called ``username`` (any case), or None."""
    return session.scalar(select(User).where(User.username == normalise_username(username)))


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Add an account; raise AccountError if the name is taken or a value is invalid."""
    name = normalise_username(username)
    if role not in ROLES:
        raise AccountError(N_("Choose the role admin or viewer."))
    if not name or len(name) > 64:
        raise AccountError(N_("A username has 1 to 64 characters."))
    if find_user(session, name) is not None:
        raise AccountError(N_("This username is already taken."))
    check_password_strength(password)
    user = User(username=name, password_hash=hash_password(password), role=role, active=True)
    session.add(user)
    session.flush()
    return user


def check_password_strength(password: str) -> None:
    """Raise AccountError for a password too short to resist guessing."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(PASSWORD_TOO_SHORT)


def set_password(session: Session, user: User, password: str) -> None:
    """Replace the password and end every session of the user."""
    check_password_strength(password)
    user.password_hash = hash_password(password)
    end_all_sessions(session, user.id)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; always spends the time of one argon2 check."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def set_role(session: Session, user: User, role: str) -> None:
    """Change the role; the last active admin cannot stop being one."""
    if role not in ROLES:
        raise AccountError(N_("Choose the role admin or viewer."))
    if user.role == "admin" and role != "admin":
        _keep_an_admin(session, user)
    user.role = role


def set_active(session: Session, user: User, active: bool) -> None:
    """Enable or disable; disabling ends every session, and spares the last admin."""
    if not active:
        if user.role == "admin":
            _keep_an_admin(session, user)
        end_all_sessions(session, user.id)
    user.active = active


def _keep_an_admin(session: Session, leaving: User) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.active, User.id != leaving.id)
    )
    if not others:
        raise AccountError(N_("The last admin cannot be disabled or lose the admin role."))


def start_session(session: Session, user: User) -> str:
    """Open a session for ``user`` and return its secret token (for the cookie)."""
    token = new_token()
    session.add(UserSession(token_hash=token_digest(token), user_id=user.id))
    return token


def session_user(session: Session, token: str) -> SessionUser | None:
    """The enabled user of the session ``token``, or None if it ended."""
    user = session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.token_hash == token_digest(token), User.active)
    )
    if user is None:
        return None
    return SessionUser.of(user, token)


def live_session_tokens(session: Session, tokens: set[str]) -> set[str]:
    """Those of ``tokens`` whose session is still open for an enabled user."""
    by_digest = {token_digest(token): token for token in tokens}
    alive = session.scalars(
        select(UserSession.token_hash)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash.in_(by_digest), User.active)
    )
    return {by_digest[digest] for digest in alive}


def end_session(session: Session, token: str) -> None:
    """End one session."""
    session.execute(delete(UserSession).where(UserSession.token_hash == token_digest(token)))


def end_all_sessions(session: Session, user_id: int) -> None:
    """End every session of a user, on every device."""
    session.execute(delete(UserSession).where(UserSession.user_id == user_id))


def issue_setup_token(session: Session) -> str:
    """A new one-time setup token (any older one stops working)."""
    token = new_token()
    session.execute(delete(SetupToken))
    session.add(
        SetupToken(token_hash=token_digest(token), expires_at=utcnow() + SETUP_LINK_LIFETIME)
    )
    return token


def redeem_setup_token(session: Session, token: str, *, consume: bool) -> bool:
    """Whether ``token`` may create the first admin now; ``consume`` uses it up."""
    if count_users(session):
        return False
    found = session.get(SetupToken, token_digest(token))
    if found is None or found.expires_at <= utcnow():
        return False
    if consume:
        session.delete(found)
    return True


def new_token() -> str:
    """A fresh secret of 256 random bits, safe in URLs, cookies and headers."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What we store of a secret token: its SHA-256, so a copy of the database opens nothing."""
    return hashlib.sha256(token.encode()).hexdigest()
