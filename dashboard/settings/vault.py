"""Secrets at rest: Z-API tokens are stored encrypted (Fernet) with a key from the data dir.

cryptography is loaded on the first seal or open, which only the settings need: the
server's processes spend no memory on it until someone uses them.
"""


class VaultError(Exception):
    """A stored secret could not be decrypted (the data dir's key changed)."""


class Vault:
    """Seals and opens secrets with the installation's key."""

    def __init__(self) -> None:
        self._key: bytes | None = None

    def init(self, key: str) -> None:
        """Use ``key`` (urlsafe base64, 32 bytes) from now on."""
        self._key = key.encode()

    def seal(self, secret: str) -> str:
        """The encrypted form of ``secret``, safe to store."""
        from cryptography.fernet import Fernet

        return Fernet(self._key).encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret inside ``sealed``."""
        from cryptography.fernet import Fernet, InvalidToken

        try:
            return Fernet(self._key).decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise VaultError("stored secret cannot be decrypted with this data dir's key") from exc
