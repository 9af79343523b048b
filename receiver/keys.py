"""Secrets and keys: generated long and random, stored as keyed SHA-256 digests, compared in constant time.

A keyed SHA-256 (HMAC with a per-secret salt) is the right hash for a long random secret that is
checked on every webhook; a password KDF would cap ingest at tens of requests a second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def generate_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """Return `salt$hmac` for storing `secret`."""
    salt = secrets.token_hex(16)
    mac = hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()
    return f"{salt}${mac}"


def matches(secret: str | None, stored: str | None) -> bool:
    """Whether `secret` is the one `stored` was made from; constant time in the secret."""
    if not secret or not stored or "$" not in stored:
        return False
    salt, mac = stored.split("$", 1)
    candidate = hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(candidate, mac)


def signature_matches(body: bytes, signature: str | None, key: str) -> bool:
    """Check a `Signature` header: hex HMAC-SHA256 of the raw body (an optional `sha256=` prefix)."""
    if not signature:
        return False
    signature = signature.strip()
    if signature.lower().startswith("sha256="):
        signature = signature[7:]
    expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.lower())
