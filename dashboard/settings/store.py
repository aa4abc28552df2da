"""The Z-API settings: stored with sealed tokens, audited. Takes a Session, never commits."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..logs import scrub
from ..models import SettingsChange, ZapiSettings, utcnow
from .vault import Vault, VaultError

MASK = "••••"
SETTINGS_ID = 1
AUDIT_LENGTH = 20


@dataclass(frozen=True)
class Credentials:
    """What a Z-API call needs, opened from the sealed settings."""

    instance_id: str
    instance_token: str
    client_token: str | None


def load(session: Session) -> ZapiSettings | None:
    """The stored settings, or None before the first save."""
    return session.get(ZapiSettings, SETTINGS_ID)


def save(
    session: Session,
    vault: Vault,
    *,
    instance_id: str,
    instance_token: str | None,
    client_token: str | None,
    public_url: str,
    set_chat_presence: bool,
) -> ZapiSettings:
    """Store the settings; a token given as None keeps the stored one."""
    stored = load(session) or ZapiSettings(id=SETTINGS_ID)
    stored.instance_id = instance_id
    if instance_token:
        stored.instance_token_sealed = vault.seal(instance_token)
        stored.instance_token_hint = instance_token[-4:]
    if client_token:
        stored.client_token_sealed = vault.seal(client_token)
        stored.client_token_hint = client_token[-4:]
    stored.public_url = public_url
    stored.set_chat_presence = set_chat_presence
    stored.updated_at = utcnow()
    session.add(stored)
    return stored


def credentials(stored: ZapiSettings | None, vault: Vault) -> Credentials | None:
    """The opened tokens, or None while the instance id or token is missing."""
    if stored is None or not stored.instance_id or not stored.instance_token_sealed:
        return None
    client = vault.open(stored.client_token_sealed) if stored.client_token_sealed else None
    return Credentials(stored.instance_id, vault.open(stored.instance_token_sealed), client)


def mark_applied(session: Session, stored: ZapiSettings) -> None:
    """Remember when Z-API accepted our webhook URL."""
    stored.applied_at = utcnow()
    session.add(stored)


def masked(hint: str | None) -> str:
    """A stored secret as people may see it: only its last four characters."""
    return f"{MASK}{hint}" if hint else ""


def webhook_url(base_url: str, token: str) -> str:
    """The webhook URL Z-API must call, on ``base_url``."""
    return f"{base_url.rstrip('/')}/webhooks/{token}"


def record_change(
    session: Session, username: str, action: str, succeeded: bool, outcome: str
) -> SettingsChange:
    """Add one line to the settings audit, its outcome scrubbed of every known secret."""
    change = SettingsChange(
        username=username, action=action, succeeded=succeeded, outcome=scrub(outcome)
    )
    session.add(change)
    return change


def scrub_changes(session: Session) -> int:
    """Scrub the audit lines stored before outcomes were scrubbed; return how many changed."""
    changed = 0
    for change_id, outcome in session.execute(select(SettingsChange.id, SettingsChange.outcome)):
        clean = scrub(outcome or "")
        if clean != (outcome or ""):
            session.execute(
                update(SettingsChange).where(SettingsChange.id == change_id).values(outcome=clean)
            )
            changed += 1
    return changed


def stored_secrets(stored: ZapiSettings | None, vault: Vault) -> tuple[str, ...]:
    """The stored Z-API tokens, opened; none when there are none or the key cannot open them."""
    try:
        found = credentials(stored, vault)
    except VaultError:
        return ()
    return (found.instance_token, found.client_token or "") if found else ()


def recent_changes(session: Session) -> list[SettingsChange]:
    """The newest audit lines, newest first."""
    query = select(SettingsChange).order_by(SettingsChange.id.desc()).limit(AUDIT_LENGTH)
    return list(session.scalars(query))


def seconds_since(moment: datetime | None) -> float | None:
    """Seconds from ``moment`` to now, or None."""
    return None if moment is None else max(0.0, (utcnow() - moment).total_seconds())
