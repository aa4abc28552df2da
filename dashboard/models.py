"""Database tables as typed SQLAlchemy models."""

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names keep Alembic's batch migrations on SQLite predictable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Convert to naive UTC for storage (SQLite keeps no zone)."""
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        """Mark a stored value as UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


# Row ids are INTEGER columns, 32 bits on PostgreSQL: a larger number names no row.
MAX_ROW_ID = 2**31 - 1


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """A stored time as the API writes it: ISO 8601 in UTC, ending in Z."""
    return moment.isoformat().replace("+00:00", "Z")


# Keys are compared byte by byte on every database, so that a range of them is a prefix
# search (PostgreSQL's default collation would not keep "9999" < "999:").
_BYTEWISE_TEXT = String(255).with_variant(String(255, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Delivery(Base):
    """One callback Z-API sent us, with its raw body and the fields we search on."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # SHA-256 of the canonical JSON: a repeat of the same callback hits this unique key.
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    receive_count: Mapped[int] = mapped_column(Integer, default=1)
    type: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    zaap_id: Mapped[str | None] = mapped_column(String(255), index=True)
    momment: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(255))
    is_group: Mapped[bool | None] = mapped_column()
    participant: Mapped[str | None] = mapped_column(String(255))
    # A ReceivedCallback's fromMe: ours (sent from the API or the phone) or the customer's.
    from_me: Mapped[bool | None] = mapped_column()
    # The canonical keys of the chat's phone and of the group member (dashboard.phones),
    # stored backwards so that one index answers both "is this number" and "ends with".
    phone_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    participant_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    # WhatsApp's LIDs (``…@lid``) of the chat, the sender and the group member: keys of the
    # same kind, so a search for a LID finds it in whichever field carried it.
    chat_lid_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    sender_lid_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    participant_lid_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    raw: Mapped[str] = mapped_column(Text)

    status_ids: Mapped[list["StatusMessageId"]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        # (key, id): a number's callbacks come out of the index already newest first.
        Index("ix_deliveries_phone_key_reversed_id", phone_key_reversed, id),
        # (key, type, id): the customer's replies after a message, without walking our own
        # sends and their statuses, which in a chat we write to all day are nearly all of it.
        Index("ix_deliveries_phone_key_reversed_type_id", phone_key_reversed, type, id),
        Index(
            "ix_deliveries_participant_key_reversed_id",
            participant_key_reversed,
            id,
            sqlite_where=participant_key_reversed.is_not(None),
            postgresql_where=participant_key_reversed.is_not(None),
        ),
        Index(
            "ix_deliveries_chat_lid_key_reversed_id",
            chat_lid_key_reversed,
            id,
            sqlite_where=chat_lid_key_reversed.is_not(None),
            postgresql_where=chat_lid_key_reversed.is_not(None),
        ),
        Index(
            "ix_deliveries_sender_lid_key_reversed_id",
            sender_lid_key_reversed,
            id,
            sqlite_where=sender_lid_key_reversed.is_not(None),
            postgresql_where=sender_lid_key_reversed.is_not(None),
        ),
        Index(
            "ix_deliveries_participant_lid_key_reversed_id",
            participant_lid_key_reversed,
            id,
            sqlite_where=participant_lid_key_reversed.is_not(None),
            postgresql_where=participant_lid_key_reversed.is_not(None),
        ),
        # Failed sends are few: "failed only" reads them without walking the others.
        Index(
            "ix_deliveries_failed_id",
            id,
            sqlite_where=error.is_not(None),
            postgresql_where=error.is_not(None),
        ),
        # AUTOINCREMENT: ids are the live feed's cursor, so SQLite must never reuse one.
        {"sqlite_autoincrement": True},
    )


class StatusMessageId(Base):
    """One entry of a MessageStatusCallback's ``ids[]``: the message that status is about."""

    __tablename__ = "status_message_ids"

    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)

    delivery: Mapped[Delivery] = relationship(back_populates="status_ids")


class Message(Base):
    """One message we sent, as its callbacks tell it: each step's first time and count.

    Kept up to date by the write that stores each callback (``dashboard.messages.store``);
    the state is the fold of ``dashboard.messages.states`` over those steps.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "" when a callback names no instance: a unique key must not hold NULL.
    instance_id: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    zaap_id: Mapped[str | None] = mapped_column(String(255), index=True)
    phone: Mapped[str | None] = mapped_column(String(255))
    phone_key_reversed: Mapped[str | None] = mapped_column(_BYTEWISE_TEXT)
    content: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    # The time of its earliest evidence, whatever the step: what since= and until= read.
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(255))
    # failures.decode's category of that error, kept so the feed counts failures in SQL.
    failure_category: Mapped[str | None] = mapped_column(String(32))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queued_count: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_count: Mapped[int] = mapped_column(Integer, default=0)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_count: Mapped[int] = mapped_column(Integer, default=0)
    played_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    played_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    first_delivery_id: Mapped[int] = mapped_column(Integer)
    # The newest callback about it: the feed lists messages by their latest news.
    last_delivery_id: Mapped[int] = mapped_column(Integer, index=True)

    __table_args__ = (
        UniqueConstraint("instance_id", "message_id", name="uq_messages_instance_id"),
        Index("ix_messages_phone_key_reversed_id", phone_key_reversed, id),
        # Failed messages are few: a search by category reads them without walking the others.
        Index(
            "ix_messages_failure_category_id",
            failure_category,
            id,
            sqlite_where=failure_category.is_not(None),
            postgresql_where=failure_category.is_not(None),
        ),
        {"sqlite_autoincrement": True},
    )


class PhoneLid(Base):
    """A number and WhatsApp's LID of the same person, as one callback carried both.

    A LID cannot be turned into a number; this map, kept from callbacks that name a
    person both ways, lets a search for the number find callbacks that carry only the LID.
    """

    __tablename__ = "phone_lids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "" when a callback names no instance: a unique key must not hold NULL.
    instance_id: Mapped[str] = mapped_column(String(255))
    phone_key_reversed: Mapped[str] = mapped_column(_BYTEWISE_TEXT)
    lid_key_reversed: Mapped[str] = mapped_column(_BYTEWISE_TEXT, index=True)
    # When a callback last carried the pair, to the day: retention forgets pairs not seen
    # within its period, since they hold people's numbers.
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        # The number first: a search reads the LIDs of a number (or of its last digits).
        UniqueConstraint(
            "phone_key_reversed",
            "lid_key_reversed",
            "instance_id",
            name="uq_phone_lids_phone_key_reversed",
        ),
    )


class RejectedRequest(Base):
    """A request with the right webhook token whose body we could not accept."""

    __tablename__ = "rejected_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    status_code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(255))
    # Raw bytes, cut at the body size limit: exactly what was sent, for an admin to inspect.
    body: Mapped[bytes] = mapped_column(LargeBinary)


class User(Base):
    """A person who can sign in: an admin manages the team, a viewer only looks."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored case-folded, so "Ana" and "ana" are one account.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    # None: follow the browser's Accept-Language.
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sessions: Mapped[list["UserSession"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class UserSession(Base):
    """One signed-in browser; deleting the row ends that session wherever the cookie is."""

    __tablename__ = "user_sessions"

    # SHA-256 of the random token in the cookie: a copy of the database opens no session.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="sessions")


class LoginAttempt(Base):
    """A sign-in attempt not (yet) known to have succeeded; they throttle guessing."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)


class SetupToken(Base):
    """The one-time link that creates the first admin of a new install."""

    __tablename__ = "setup_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ZapiSettings(Base):
    """Where Z-API is and how to reach it; a single row. Tokens are stored sealed."""

    __tablename__ = "zapi_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(String(64))
    instance_token_sealed: Mapped[str | None] = mapped_column(Text)
    client_token_sealed: Mapped[str | None] = mapped_column(Text)
    # The last four characters, to show "••••abcd" without opening the seal.
    instance_token_hint: Mapped[str | None] = mapped_column(String(4))
    client_token_hint: Mapped[str | None] = mapped_column(String(4))
    public_url: Mapped[str | None] = mapped_column(String(255))
    # Typing and presence events are many and the timeline does without them: opt-in.
    set_chat_presence: Mapped[bool] = mapped_column(default=False)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A personal token that lets a script read the JSON API as its user."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the token, which is shown once: a copy of the database opens nothing.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The last four characters, so people can tell their tokens apart.
    hint: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobLease(Base):
    """Who runs a scheduled job now, and until when: one instance at a time does it."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SettingsChange(Base):
    """One save, apply, check or test of the Z-API settings, for the audit list."""

    __tablename__ = "settings_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    succeeded: Mapped[bool] = mapped_column()
    # Plain words, never a secret: what the user saw as the result.
    outcome: Mapped[str] = mapped_column(Text)
