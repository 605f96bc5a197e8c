"""Authentication: argon2 password hashes, signed JWT access tokens, the caller's identity."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass, field

import argon2.profiles
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from metacrm.errors import Unauthenticated
from metacrm.i18n import Language

# RFC 9106's low-memory profile by default; METACRM_ARGON2_PROFILE=CHEAPEST lets test
# suites create hundreds of users without spending half a second on each.
_hasher = PasswordHasher.from_parameters(
    getattr(argon2.profiles, os.environ.get("METACRM_ARGON2_PROFILE", "RFC_9106_LOW_MEMORY"))
)
_ALGORITHM = "HS256"
#: Hash of a password nobody has, so an unknown user costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("metacrm-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; always spends one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Identity:
    """Who a validly signed token speaks for; the user row is checked per request."""

    user_id: uuid.UUID | None
    tenant: str
    storage: str
    token_epoch: int = 0
    ip: str | None = None
    #: Set for API keys: the key's id and the secret to check against its stored hash.
    api_key_id: uuid.UUID | None = None
    api_secret: str | None = field(default=None, repr=False)
    #: Set for web sessions: the session's id and the secret to check against its hash.
    session_id: uuid.UUID | None = None
    session_secret: str | None = field(default=None, repr=False)
    #: The language the request is answered in, negotiated once (state.get_identity).
    language: Language = "en"


def issue_token(identity: Identity, key: str, ttl_minutes: int) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(identity.user_id),
        "tenant": identity.tenant,
        "storage": identity.storage,
        "ep": identity.token_epoch,
        "iat": now,
        "exp": now + dt.timedelta(minutes=ttl_minutes),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM), ttl_minutes * 60


def read_token(token: str, key: str) -> Identity:
    """The identity of a valid, unexpired token; Unauthenticated otherwise."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "tenant"]}
        )
        return Identity(
            user_id=uuid.UUID(claims["sub"]),
            tenant=str(claims["tenant"]),
            storage=str(claims["storage"]),
            token_epoch=int(claims.get("ep", 0)),
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired; log in again") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthenticated("the token is not valid") from None


API_KEY_PREFIX = "mcrm"


def make_api_key(tenant: str) -> tuple[uuid.UUID, str, str]:
    """A new key: its id, the whole key shown once, and the hash that is stored."""
    return _make_secret(API_KEY_PREFIX, tenant)


def hash_secret(secret: str) -> str:
    # A random 256-bit secret needs no slow hash: SHA-256 cannot be brute-forced here.
    return hashlib.sha256(secret.encode()).hexdigest()


def read_api_key(key: str) -> Identity | None:
    """The identity an API key claims (checked against the tenant later), or None."""
    read = _read_secret(API_KEY_PREFIX, key)
    if read is None:
        return None
    tenant, key_id, secret = read
    return Identity(None, tenant, f"tenant_{tenant}", api_key_id=key_id, api_secret=secret)


SESSION_PREFIX = "mcs"


def make_session_cookie(tenant: str) -> tuple[uuid.UUID, str, str]:
    """A new web session: its id, the cookie value, and the hash of its secret to store."""
    return _make_secret(SESSION_PREFIX, tenant)


def read_session_cookie(value: str) -> Identity | None:
    """The identity a session cookie claims (checked against the tenant later), or None."""
    read = _read_secret(SESSION_PREFIX, value)
    if read is None:
        return None
    tenant, session_id, secret = read
    return Identity(None, tenant, f"tenant_{tenant}", session_id=session_id, session_secret=secret)


def _make_secret(prefix: str, tenant: str) -> tuple[uuid.UUID, str, str]:
    """`prefix.tenant.id.secret` with a new id and secret: the id, the value, the hash."""
    new_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
    return new_id, f"{prefix}.{tenant}.{new_id.hex}.{secret}", hash_secret(secret)


def _read_secret(prefix: str, value: str) -> tuple[str, uuid.UUID, str] | None:
    """The tenant, id and secret of a `prefix.tenant.id.secret` value, or None."""
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != prefix or len(parts[3]) > 100:
        return None
    _prefix, tenant, raw_id, secret = parts
    try:
        return tenant, uuid.UUID(hex=raw_id), secret
    except ValueError:
        return None
