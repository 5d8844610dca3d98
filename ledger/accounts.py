"""Portal accounts: users and roles, password hashes, custodial keys, API tokens.

Off-chain only (SQL, migrated by Alembic revision 0200). Nothing here logs a password, a token
or a key; the reprs of the models leave them out.

- Passwords: werkzeug's scrypt hashes (salted, memory-hard).
- Custodial keys: a secp256k1 key made for a user without a wallet, encrypted at rest with
  Fernet under a key derived from the server secret by HKDF-SHA256. It is decrypted only to sign
  (:func:`custodial_account`), never returned to a client.
- API tokens: ``lt_`` + 32 random bytes, shown once; the database keeps their SHA-256 (a token
  has 256 bits of entropy, so a fast hash is enough) and an 11-character prefix to list them by.
  Every token is read-only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from sqlalchemy import BigInteger, Boolean, Engine, ForeignKey, Integer, LargeBinary, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from .db import session_scope
from .errors import UserError
from .models import Base

ROLES = ("artist", "label", "licensee")
TOKEN_PREFIX = "lt_"
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
MIN_PASSWORD = 10
_ID = BigInteger().with_variant(Integer, "sqlite")


class AccountError(UserError):
    """A sign-up, log-in or token request the portal refuses (message safe to show)."""


# ----------------------------------------------------------------------------- models


class User(Base):
    __tablename__ = "portal_users"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(42), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))  # None: signs in with Ethereum only
    roles: Mapped[str] = mapped_column(String(64))  # comma-separated subset of ROLES
    address: Mapped[str] = mapped_column(String(42), unique=True)  # the key that signs its actions
    wallet: Mapped[bool] = mapped_column(Boolean, default=False)  # True: own wallet, no custodial key
    encrypted_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    payout_address: Mapped[str | None] = mapped_column(String(42))
    created_at: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:  # never the hash or the key
        return f"User(id={self.id}, username={self.username!r}, roles={self.roles!r}, address={self.address})"

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(",") if r)

    def has_role(self, role: str) -> bool:
        return role in self.role_set


class ApiToken(Base):
    __tablename__ = "portal_api_tokens"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16), default="read")
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id}, user_id={self.user_id}, prefix={self.prefix!r})"


# ----------------------------------------------------------------------------- secrets


def _fernet(server_secret: str | bytes) -> Fernet:
    secret = server_secret.encode() if isinstance(server_secret, str) else server_secret
    if len(secret) < 16:
        raise UserError("the server secret is too short to derive keys from (16 bytes at least)")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"ledger-portal", info=b"custodial-keys-v1").derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_key(private_key: bytes, server_secret: str | bytes) -> bytes:
    token: bytes = _fernet(server_secret).encrypt(private_key)
    return token


def decrypt_key(blob: bytes, server_secret: str | bytes) -> bytes:
    try:
        key: bytes = _fernet(server_secret).decrypt(blob)
        return key
    except InvalidToken:
        raise UserError("a custodial key cannot be decrypted with this server secret") from None


def custodial_account(user: User, server_secret: str | bytes) -> LocalAccount:
    """The user's custodial LocalAccount (to sign with; never to show)."""
    if user.encrypted_key is None:
        raise UserError("this account signs with its own wallet: the server holds no key for it")
    account: LocalAccount = Account.from_key(decrypt_key(user.encrypted_key, server_secret))
    return account


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ----------------------------------------------------------------------------- users


def _check_roles(roles: Iterable[str]) -> str:
    chosen = sorted(set(roles))
    bad = [r for r in chosen if r not in ROLES]
    if bad:
        raise AccountError(f"unknown role {bad[0]!r}; roles are {', '.join(ROLES)}")
    if not chosen:
        raise AccountError("choose at least one role")
    return ",".join(chosen)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 256:
        raise AccountError("a password has at most 256 characters")


def create_user(
    engine: Engine,
    username: str,
    password: str,
    roles: Iterable[str],
    server_secret: str | bytes,
    payout_address: str | None = None,
) -> User:
    """A password account with a new custodial key."""
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise AccountError("a username has 3 to 32 characters: lower-case letters, digits, '.', '_' or '-'")
    check_password_strength(password)
    account = Account.create()
    user = User(
        username=username,
        password_hash=generate_password_hash(password, method="scrypt"),
        roles=_check_roles(roles),
        address=account.address,
        wallet=False,
        encrypted_key=encrypt_key(bytes(account.key), server_secret),
        payout_address=_optional_address(payout_address),
        created_at=int(time.time()),
    )
    return _insert(engine, user)


def user_for_wallet(engine: Engine, address: str, roles: Iterable[str] = ("artist",)) -> User:
    """The user who signs in with this wallet (made on first sign-in)."""
    address = to_checksum_address(address)
    with session_scope(engine) as session:
        found = session.scalars(select(User).where(User.address == address)).one_or_none()
        if found is not None:
            return found
    user = User(
        username=address.lower(),
        password_hash=None,
        roles=_check_roles(roles),
        address=address,
        wallet=True,
        encrypted_key=None,
        payout_address=address,
        created_at=int(time.time()),
    )
    return _insert(engine, user)


def _insert(engine: Engine, user: User) -> User:
    try:
        with session_scope(engine) as session:
            session.add(user)
    except IntegrityError:
        raise AccountError("that username is taken") from None
    return user


def _optional_address(address: str | None) -> str | None:
    if not address:
        return None
    from .chain import checksum

    return checksum(address.strip(), "payout address")


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The user when the password is right; None otherwise (same time either way)."""
    with session_scope(engine) as session:
        user = session.scalars(select(User).where(User.username == username.strip().lower())).one_or_none()
    if user is None or user.password_hash is None:
        check_password_hash(_DUMMY_HASH, password)  # no timing difference for unknown users
        return None
    return user if check_password_hash(user.password_hash, password) else None


_DUMMY_HASH = generate_password_hash("not a real password", method="scrypt")


def get_user(engine: Engine, user_id: int) -> User | None:
    with session_scope(engine) as session:
        return session.get(User, user_id)


def find_user(engine: Engine, username: str) -> User | None:
    with session_scope(engine) as session:
        return session.scalars(select(User).where(User.username == username.strip().lower())).one_or_none()


def change_password(engine: Engine, user_id: int, old: str, new: str) -> None:
    check_password_strength(new)
    with session_scope(engine) as session:
        user = session.get(User, user_id)
        if user is None or user.password_hash is None or not check_password_hash(user.password_hash, old):
            raise AccountError("the current password is wrong")
        user.password_hash = generate_password_hash(new, method="scrypt")


def update_profile(engine: Engine, user_id: int, roles: Iterable[str], payout_address: str | None) -> User:
    with session_scope(engine) as session:
        user = session.get(User, user_id)
        if user is None:
            raise AccountError("no such account")
        user.roles = _check_roles(roles)
        user.payout_address = _optional_address(payout_address)
        return user


# ----------------------------------------------------------------------------- API tokens


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def create_token(engine: Engine, user_id: int, name: str) -> NewToken:
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise AccountError("a token needs a name of 1 to 80 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user_id,
        name=name,
        prefix=secret[:11],
        token_hash=hash_token(secret),
        scope="read",
        created_at=int(time.time()),
    )
    with session_scope(engine) as session:
        session.add(token)
    return NewToken(token, secret)


def list_tokens(engine: Engine, user_id: int) -> list[ApiToken]:
    with session_scope(engine) as session:
        return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_token(engine: Engine, user_id: int, token_id: int) -> bool:
    """Revokes one of the user's tokens; False when the user has no such live token."""
    with session_scope(engine) as session:
        token = session.get(ApiToken, token_id)
        if token is None or token.user_id != user_id or token.revoked_at is not None:
            return False
        token.revoked_at = int(time.time())
        return True


def user_for_token(engine: Engine, secret: str) -> tuple[User, ApiToken] | None:
    """(user, token) for a live token; None for an unknown or revoked one."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    with session_scope(engine) as session:
        token = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).one_or_none()
        if token is None or token.revoked_at is not None:
            return None
        token.last_used_at = int(time.time())
        user = session.get(User, token.user_id)
        return (user, token) if user is not None else None
