"""Encryption of API-key secrets at rest (no I/O).

HMAC verification needs the plain secret, so it cannot be hashed; it is
encrypted with AES-256-GCM under a server-side key that lives in the
service's settings, never in the database. A dump of the database alone
therefore reveals nothing.

Keyring format (setting ``EXCHANGE_USERS_APIKEY_KEYRING``): comma-separated
``<key id>:<urlsafe base64 of 32 random bytes>``; the first entry encrypts new
secrets, every entry can decrypt, so keys rotate by prepending a new one (and
re-encrypting at leisure). Each ciphertext is ``nonce (12 bytes) || AES-GCM
output`` and is stored with its key id. The associated data binds a
ciphertext to its row (key id in the table and owner), so a ciphertext copied
onto another row does not decrypt.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class KeyringError(ValueError):
    pass


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes


def generate_keyring_entry(key_id: str) -> str:
    """A new keyring entry, for operators (``python -m services.users.secretbox``)."""
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"


class SecretBox:
    def __init__(self, keyring: str):
        self._keys: dict[str, AESGCM] = {}
        self._active: str | None = None
        for entry in (part.strip() for part in keyring.split(",")):
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _KEY_ID.match(key_id):
                raise KeyringError("keyring entries are <key id>:<base64 of 32 bytes>")
            try:
                raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except ValueError:
                raise KeyringError(f"key {key_id}: not base64") from None
            if len(raw) != 32:
                raise KeyringError(f"key {key_id}: must be 32 bytes (AES-256), got {len(raw)}")
            if key_id in self._keys:
                raise KeyringError(f"key id {key_id} appears twice")
            self._keys[key_id] = AESGCM(raw)
            self._active = self._active or key_id
        if self._active is None:
            raise KeyringError("the keyring is empty")

    @property
    def active_key_id(self) -> str:
        return self._active

    def seal(self, secret: str, context: str) -> Sealed:
        nonce = os.urandom(12)
        box = self._keys[self._active]
        return Sealed(self._active, nonce + box.encrypt(nonce, secret.encode(), context.encode()))

    def open(self, sealed: Sealed, context: str) -> str:
        box = self._keys.get(sealed.key_id)
        if box is None:
            raise KeyringError(f"no key {sealed.key_id!r} in the keyring")
        data = bytes(sealed.ciphertext)
        try:
            return box.decrypt(data[:12], data[12:], context.encode()).decode()
        except InvalidTag:
            raise KeyringError("ciphertext does not decrypt (wrong key or context)") from None


if __name__ == "__main__":
    import sys
    print(generate_keyring_entry(sys.argv[1] if len(sys.argv) > 1 else "k1"))
