"""HMAC keys at rest: AES-256-GCM with the configured key; the row's identity (tenant,
merchant account, key id) is the associated data, so a ciphertext moved to another row does
not decrypt."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class EncryptionKeyInvalid(ValueError):
    pass


def parse_encryption_key(value: str) -> bytes:
    text = value.strip()
    key: bytes | None = None
    if len(text) == 64:
        try:
            key = binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyInvalid("hmac_encryption_key is not hex or base64") from None
    if len(key) != 32:
        raise EncryptionKeyInvalid("hmac_encryption_key must be 32 bytes")
    return key


@dataclass(frozen=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes
    key_id: str


class KeyBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"marketpay-hmac-keys:" + key).hexdigest()[:12]

    def seal(self, plaintext: str, aad: str) -> Sealed:
        nonce = os.urandom(12)
        ciphertext = self._aead.encrypt(nonce, plaintext.encode(), aad.encode())
        return Sealed(nonce=nonce, ciphertext=ciphertext, key_id=self.key_id)

    def open(self, nonce: bytes, ciphertext: bytes, aad: str) -> str:
        return self._aead.decrypt(nonce, ciphertext, aad.encode()).decode()

    def __repr__(self) -> str:
        return f"KeyBox(key_id={self.key_id!r})"
