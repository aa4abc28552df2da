"""Secrets at rest: Z-API tokens are stored encrypted (Fernet) with a key from the data dir."""

from cryptography.fernet import Fernet, InvalidToken


class VaultError(Exception):
    """A stored secret could not be decrypted (the data dir's key changed)."""


class Vault:
    """Seals and opens secrets with the installation's key."""

    def __init__(self) -> None:
        self._fernet: Fernet | None = None

    def init(self, key: str) -> None:
        """Use ``key`` (urlsafe base64, 32 bytes) from now on."""
        self._fernet = Fernet(key.encode())

    def seal(self, secret: str) -> str:
        """The encrypted form of ``secret``, safe to store."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret inside ``sealed``."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise VaultError("stored secret cannot be decrypted with this data dir's key") from exc
