"""Authentication: argon2 password hashes, signed JWT access tokens, the caller's identity."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from metacrm.errors import Unauthenticated

_hasher = PasswordHasher()
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

    user_id: uuid.UUID
    tenant: str
    storage: str
    token_epoch: int = 0


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
