"""API keys for Open311 clients: printed once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from linli.errors import ValidationError
from linli.models import ApiKey, utcnow

KEY_PREFIX = "ll_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new key for `name` (the row, the plain key — shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 80:
        raise ValidationError("an API key needs a name of 1–80 characters", field="name",
                              hint="name the client, e.g. hotline-12345 or mini-program")
    if session.exec(select(ApiKey).where(ApiKey.name == name)).first() is not None:
        raise ValidationError(f"an API key named {name!r} already exists", field="name",
                              hint="pick another name, or revoke the old key first")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=plain[:10], key_hash=_digest(plain))
    session.add(row)
    session.flush()
    return row, plain


def check_key(session: Session, key: str | None) -> ApiKey:
    """The active key row matching `key`; ValidationError (field api_key) when missing, unknown or revoked."""
    if not key:
        raise ValidationError("api_key is required", field="api_key",
                              hint="ask the street office for a key (`linli apikey create NAME`)")
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == _digest(key))).first()
    if row is None or row.revoked_at is not None:
        raise ValidationError("api_key is not valid", field="api_key",
                              hint="check the key; a revoked key no longer works")
    return row


def revoke_key(session: Session, name: str) -> ApiKey:
    """Revoke the key named `name`."""
    row = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
    if row is None:
        raise ValidationError(f"no API key named {name!r}", field="name", hint="list keys with `linli apikey list`")
    row.revoked_at = utcnow()
    session.add(row)
    return row
