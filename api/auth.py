"""API keys, signatures, nonces and sessions (spec/gateway.md §3).

Layout
------
* ``canonical_json`` and ``signed_payload``: the exact bytes a signature covers;
* ``Signer``: the client's half of a key (Ed25519 seed or HMAC secret); signs actions and logons;
* ``ApiKey`` and ``KeyStore``: the server's half: Ed25519 public keys, and HMAC secrets kept
  sealed with AES-256-GCM under the node's sealing key, never in the clear;
* ``NonceStore``: dYdX's timestamp-nonce rule, with ``export()``/``load()`` for the journal;
* ``Authenticator``: verifies a signed request or a logon; checks a session's posts and
  private subscriptions.

Signed payload (UTF-8 of)::

    "\\n".join(["AFTERHOURS-SIG-v1", network, key_id, str(nonce),
               str(expires_after_ms or 0), sha256_hex(canonical_json(action))])

where ``action`` is the action object exactly as sent (``{"type": "logon"}`` for a logon),
and canonical JSON has sorted keys, ``,``/``:`` separators, UTF-8 (non-ASCII written as is;
only ``"``, ``\\`` and control characters escaped, as Python's ``json.dumps(...,
ensure_ascii=False)``), integers in plain digits and no floats. Ed25519 signs those bytes;
HMAC is HMAC-SHA256 keyed by the secret. Signatures travel as hex.

Invariants
----------
* A refused request uses up no nonce: the nonce is consumed last, after the signature, the
  key's state and its scope have passed.
* Nothing here reads a clock: every check takes ``now_ms``, the sequencer's time, so a
  journal replay makes the same decisions.
* The signature is checked before the key's state, so only the key's holder learns that a
  key is revoked or expired.

Known limitations
-----------------
* The sealing key lives in the node's config; whoever reads both it and the key export can
  recover HMAC secrets. Ed25519 keys have no such secret on the server and are the default.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import os
import re
import secrets
from typing import Any, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.errors import GatewayCode, compose_msg
from api.protocol import (
    Action,
    Logon,
    Post,
    SignedAction,
    Subscription,
    Withdraw,
    is_private,
    signed_action_object,
)

SIGNATURE_DOMAIN = "AFTERHOURS-SIG-v1"
LOGON_ACTION = {"type": "logon"}
SCOPES = ("read", "trade", "transfer")
Scope = Literal["read", "trade", "transfer"]
KeyKind = Literal["ed25519", "hmac"]

ED25519_SIGNATURE_BYTES = 64
HMAC_SIGNATURE_BYTES = 32
HMAC_SECRET_MIN_BYTES = 16
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class AuthError(Exception):
    """A refused request: ``code`` is a ``GatewayCode``; ``msg`` the sentence for the client."""

    def __init__(self, code: GatewayCode, detail: str = ""):
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail

    @property
    def msg(self) -> str:
        return compose_msg(self.code, self.detail or None)


# --------------------------------------------------------------------- signed payload


def canonical_json(action: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no floats. A Struct is taken with every field
    (defaults included), as ``msgspec`` encodes it on the wire."""
    obj = msgspec.to_builtins(action) if isinstance(action, msgspec.Struct) else action
    return msgspec.json.encode(_sorted(obj))


def _sorted(obj: Any) -> Any:
    """The same JSON value with every object's keys in code-point order; floats refused."""
    if isinstance(obj, dict):
        return {key: _sorted(obj[key]) for key in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_sorted(value) for value in obj]
    if isinstance(obj, float):
        raise ValueError("a signed action may not contain floats; prices and sizes are decimal strings")
    return obj


def signed_payload(network: str, key_id: str, nonce: int, expires_after_ms: int | None, action: Any) -> bytes:
    """The exact bytes a signature covers (module docstring)."""
    for name, value in (("network", network), ("key_id", key_id)):
        if not _NAME.match(value):
            raise ValueError(f"{name} {value!r} must match {_NAME.pattern}")
    digest = hashlib.sha256(canonical_json(action)).hexdigest()
    fields = [SIGNATURE_DOMAIN, network, key_id, str(int(nonce)), str(int(expires_after_ms or 0)), digest]
    return "\n".join(fields).encode("utf-8")


# ------------------------------------------------------------------------ client side


class Signer:
    """The client's half of an API key: an Ed25519 seed (32 bytes) or an HMAC secret."""

    def __init__(self, key_id: str, kind: KeyKind, secret: bytes):
        if kind == "ed25519":
            self._private = Ed25519PrivateKey.from_private_bytes(secret)
        elif kind == "hmac":
            if len(secret) < HMAC_SECRET_MIN_BYTES:
                raise ValueError(f"an HMAC secret needs at least {HMAC_SECRET_MIN_BYTES} bytes")
        else:
            raise ValueError(f"unknown key kind {kind!r}")
        self.key_id, self.kind, self._secret = key_id, kind, bytes(secret)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key (Ed25519 signers only)."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign_payload(self, payload: bytes) -> str:
        if self.kind == "ed25519":
            return self._private.sign(payload).hex()
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def sign(self, network: str, nonce: int, action: Any, expires_after_ms: int | None = None) -> str:
        return self.sign_payload(signed_payload(network, self.key_id, nonce, expires_after_ms, action))

    def post(self, network: str, post_id: int, action: Action, nonce: int, expires_after_ms: int | None = None) -> Post:
        signature = self.sign(network, nonce, action, expires_after_ms)
        return Post(post_id, action, self.key_id, nonce, expires_after_ms, signature)

    def signed_action(self, network: str, action: Action, nonce: int, expires_after_ms: int | None = None) -> SignedAction:
        signature = self.sign(network, nonce, action, expires_after_ms)
        return SignedAction(action, self.key_id, nonce, signature, expires_after_ms)

    def logon(self, network: str, nonce: int, expires_after_ms: int | None = None) -> Logon:
        return Logon(self.key_id, nonce, self.sign(network, nonce, LOGON_ACTION, expires_after_ms), expires_after_ms)

    def export(self) -> str:
        """``kind:key_id:secret_hex``: the credential line a bot reads (keep it private)."""
        return f"{self.kind}:{self.key_id}:{self._secret.hex()}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        kind, key_id, secret_hex = text.strip().split(":")
        return cls(key_id, kind, bytes.fromhex(secret_hex))  # type: ignore[arg-type]


# ------------------------------------------------------------------------ server side


class ApiKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``material``: the raw Ed25519 public key, or the HMAC secret sealed with AES-256-GCM
    (12-byte nonce, then ciphertext and tag). ``expires_at_ms`` 0 means never."""

    key_id: str
    account: int
    kind: KeyKind
    material: bytes
    scopes: tuple[Scope, ...]
    expires_at_ms: int = 0
    revoked: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.key_id) or "." in self.key_id:
            raise ValueError(f"key id {self.key_id!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        if not self.scopes or set(self.scopes) - set(SCOPES) or list(self.scopes) != sorted(set(self.scopes)):
            raise ValueError(f"scopes {self.scopes!r} must be a sorted, non-empty subset of {SCOPES}")


def new_key_id() -> str:
    return "ak_" + secrets.token_hex(8)


class KeyStore:
    """The node's API keys by id. HMAC secrets are sealed with ``sealing_key`` (32 bytes),
    the key id and account bound in as associated data."""

    def __init__(self, sealing_key: bytes | None = None):
        if sealing_key is not None and len(sealing_key) != 32:
            raise ValueError("the sealing key must be 32 bytes")
        self._sealer = AESGCM(sealing_key) if sealing_key is not None else None
        self._keys: dict[str, ApiKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}

    def add(self, key: ApiKey) -> None:
        if key.key_id in self._keys:
            raise ValueError(f"key id {key.key_id!r} exists")
        if key.kind == "ed25519":
            self._public[key.key_id] = Ed25519PublicKey.from_public_bytes(key.material)
        elif self._sealer is None:
            raise ValueError("HMAC keys need a KeyStore with a sealing key")
        self._keys[key.key_id] = key

    def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    def must_get(self, key_id: str) -> ApiKey:
        key = self._keys.get(key_id)
        if key is None:
            raise AuthError(GatewayCode.UNKNOWN_KEY, key_id)
        return key

    def revoke(self, key_id: str) -> None:
        self._keys[key_id] = msgspec.structs.replace(self.must_get(key_id), revoked=True)

    def keys_of(self, account: int) -> list[ApiKey]:
        return sorted((k for k in self._keys.values() if k.account == account), key=lambda k: k.key_id)

    def create_ed25519(self, account: int, scopes: tuple[Scope, ...] = ("read", "trade"), *,
                       key_id: str | None = None, expires_at_ms: int = 0, seed: bytes | None = None) -> Signer:
        """A new Ed25519 key: stores the public half, returns the client's ``Signer``."""
        signer = Signer(key_id or new_key_id(), "ed25519", seed if seed is not None else os.urandom(32))
        self.add(ApiKey(signer.key_id, account, "ed25519", signer.public_key, _scopes(scopes), expires_at_ms))
        return signer

    def create_hmac(self, account: int, scopes: tuple[Scope, ...] = ("read", "trade"), *,
                    key_id: str | None = None, expires_at_ms: int = 0, secret: bytes | None = None) -> Signer:
        """A new HMAC-SHA256 key: stores the secret sealed, returns the client's ``Signer``."""
        if self._sealer is None:
            raise ValueError("HMAC keys need a KeyStore with a sealing key")
        signer = Signer(key_id or new_key_id(), "hmac", secret if secret is not None else os.urandom(32))
        nonce = os.urandom(12)
        sealed = nonce + self._sealer.encrypt(nonce, signer._secret, _aad(signer.key_id, account))
        self.add(ApiKey(signer.key_id, account, "hmac", sealed, _scopes(scopes), expires_at_ms))
        return signer

    def verify_signature(self, key: ApiKey, payload: bytes, signature_hex: str) -> None:
        """Raises ``SIGNATURE_MALFORMED`` or ``BAD_SIGNATURE``."""
        size = ED25519_SIGNATURE_BYTES if key.kind == "ed25519" else HMAC_SIGNATURE_BYTES
        if len(signature_hex) != 2 * size:
            raise AuthError(GatewayCode.SIGNATURE_MALFORMED, f"{len(signature_hex)} hex digits, expected {2 * size}")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise AuthError(GatewayCode.SIGNATURE_MALFORMED, "not hex") from None
        if key.kind == "ed25519":
            try:
                self._public[key.key_id].verify(signature, payload)
            except InvalidSignature:
                raise AuthError(GatewayCode.BAD_SIGNATURE) from None
            return
        expected = hmac.new(self._unseal(key), payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise AuthError(GatewayCode.BAD_SIGNATURE)

    def _unseal(self, key: ApiKey) -> bytes:
        if self._sealer is None:
            raise RuntimeError("the KeyStore holds HMAC keys but has no sealing key")
        return self._sealer.decrypt(key.material[:12], key.material[12:], _aad(key.key_id, key.account))

    def export(self) -> list[ApiKey]:
        """Every key, by id: what the node persists (no HMAC secret in the clear)."""
        return [self._keys[k] for k in sorted(self._keys)]

    @classmethod
    def load(cls, keys: list[ApiKey], sealing_key: bytes | None = None) -> KeyStore:
        store = cls(sealing_key)
        for key in keys:
            store.add(key)
        return store


def _scopes(scopes: tuple[str, ...]) -> tuple[Scope, ...]:
    return tuple(sorted(set(scopes)))  # type: ignore[return-value]


def _aad(key_id: str, account: int) -> bytes:
    return f"afterhours-hmac-key\n{key_id}\n{account}".encode()


def create_demo_key(keys: KeyStore, account: int) -> Signer:
    """The demo account's key of a node started with no config: Ed25519, every scope."""
    return keys.create_ed25519(account, SCOPES, key_id=f"demo-{account}")


# ----------------------------------------------------------------------------- nonces

NONCE_WINDOW_PAST_MS = 30_000
NONCE_WINDOW_FUTURE_MS = 1_000
NONCES_KEPT_PER_KEY = 100
NONCE_LIMIT = 1 << 63


class KeyNonces(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key_id: str
    highest_evicted: int  # -1: nothing evicted yet
    kept: list[int]  # ascending


class NonceState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``NonceStore`` as data, keys in id order: what the node journals and snapshots."""

    keys: list[KeyNonces]


class NonceStore:
    """dYdX's timestamp nonces, per key. A nonce (ms) is accepted iff
    ``now − 30 s ≤ nonce ≤ now + 1 s``, it is above the key's highest evicted nonce, it is
    unused, and, when the key already keeps 100, above the smallest kept (which it then
    evicts)."""

    def __init__(self, past_ms: int = NONCE_WINDOW_PAST_MS, future_ms: int = NONCE_WINDOW_FUTURE_MS,
                 kept_per_key: int = NONCES_KEPT_PER_KEY):
        self.past_ms, self.future_ms, self.kept_per_key = past_ms, future_ms, kept_per_key
        self._kept: dict[str, list[int]] = {}
        self._evicted: dict[str, int] = {}

    def check(self, key_id: str, nonce: int, now_ms: int) -> GatewayCode | None:
        """Why ``nonce`` would be refused, or None; changes nothing."""
        if not 0 <= nonce < NONCE_LIMIT:
            return GatewayCode.NONCE_OUT_OF_RANGE
        if nonce < now_ms - self.past_ms:
            return GatewayCode.NONCE_TOO_OLD
        if nonce > now_ms + self.future_ms:
            return GatewayCode.NONCE_TOO_NEW
        if nonce <= self._evicted.get(key_id, -1):
            return GatewayCode.NONCE_EVICTED
        kept = self._kept.get(key_id, [])
        at = bisect.bisect_left(kept, nonce)
        if at < len(kept) and kept[at] == nonce:
            return GatewayCode.NONCE_REUSED
        if len(kept) >= self.kept_per_key and at == 0:
            return GatewayCode.NONCE_BELOW_KEPT
        return None

    def consume(self, key_id: str, nonce: int, now_ms: int) -> None:
        """Accept and record ``nonce``, or raise ``AuthError`` and record nothing."""
        code = self.check(key_id, nonce, now_ms)
        if code is not None:
            raise AuthError(code, f"nonce {nonce}, server time {now_ms}")
        kept = self._kept.setdefault(key_id, [])
        bisect.insort(kept, nonce)
        if len(kept) > self.kept_per_key:
            self._evicted[key_id] = max(self._evicted.get(key_id, -1), kept.pop(0))

    def export(self) -> NonceState:
        ids = sorted(set(self._kept) | set(self._evicted))
        return NonceState([KeyNonces(k, self._evicted.get(k, -1), list(self._kept.get(k, []))) for k in ids])

    @classmethod
    def load(cls, state: NonceState, **params: int) -> NonceStore:
        store = cls(**params)
        for entry in state.keys:
            store._kept[entry.key_id] = sorted(entry.kept)
            if entry.highest_evicted >= 0:
                store._evicted[entry.key_id] = entry.highest_evicted
        return store


# ------------------------------------------------------------------- authenticator


class Session(msgspec.Struct, frozen=True):
    """A logged-on websocket connection: one account, through one key."""

    account: int
    key_id: str
    logged_on_at_ms: int


def required_scope(action: Action) -> Scope:
    """``withdraw`` needs ``transfer``; every other action (orders, leverage, margin) ``trade``."""
    return "transfer" if isinstance(action, Withdraw) else "trade"


class Authenticator:
    """Signature, key and nonce checks for one network (e.g. ``"local"``, ``"testnet"``)."""

    def __init__(self, network: str, keys: KeyStore, nonces: NonceStore):
        if not _NAME.match(network):
            raise ValueError(f"network {network!r} must match {_NAME.pattern}")
        self.network, self.keys, self.nonces = network, keys, nonces

    def verify(self, *, key_id: str, nonce: int, signature: str, action: Any, scope: Scope, now_ms: int,
               expires_after_ms: int | None = None) -> ApiKey:
        """Checks, in order: key known, signature well-formed and valid, key not revoked,
        not expired, has ``scope``, request not past ``expires_after_ms``, nonce acceptable.
        Only then is the nonce used up. Returns the key; raises ``AuthError``."""
        key = self.keys.must_get(key_id)
        payload = signed_payload(self.network, key_id, nonce, expires_after_ms, action)
        self.keys.verify_signature(key, payload, signature)
        self._check_key(key, scope, now_ms)
        if expires_after_ms and now_ms > expires_after_ms:
            raise AuthError(GatewayCode.REQUEST_EXPIRED, f"expiresAfter {expires_after_ms}, server time {now_ms}")
        self.nonces.consume(key_id, nonce, now_ms)
        return key

    def _check_key(self, key: ApiKey, scope: Scope, now_ms: int) -> None:
        if key.revoked:
            raise AuthError(GatewayCode.KEY_REVOKED, key.key_id)
        if key.expires_at_ms and now_ms >= key.expires_at_ms:
            raise AuthError(GatewayCode.KEY_EXPIRED, f"{key.key_id} expired at {key.expires_at_ms}")
        if scope not in key.scopes:
            raise AuthError(GatewayCode.SCOPE_MISSING, f"needs {scope!r}; the key has {', '.join(key.scopes)}")

    def logon(self, msg: Logon, now_ms: int, current: Session | None = None) -> Session:
        """A signed logon (action ``{"type":"logon"}``, scope ``read``) -> the session."""
        if current is not None:
            raise AuthError(GatewayCode.ALREADY_LOGGED_ON, f"account {current.account}")
        key = self.verify(key_id=msg.keyId, nonce=msg.nonce, signature=msg.signature, action=LOGON_ACTION,
                          scope="read", now_ms=now_ms, expires_after_ms=msg.expiresAfter)
        return Session(key.account, key.key_id, now_ms)

    def check_session(self, session: Session, scope: Scope, now_ms: int) -> ApiKey:
        """The session's key, still valid (not revoked or expired since logon) and holding ``scope``."""
        key = self.keys.must_get(session.key_id)
        self._check_key(key, scope, now_ms)
        return key

    def authorize_post(self, post: Post, frame: bytes | str, session: Session | None, now_ms: int) -> int:
        """The account a post acts for: the session's when it carries no signature, else the
        signing key's (which must be the session's, if any). ``frame`` is the raw message,
        whose ``action`` the signature covers exactly as sent."""
        scope = required_scope(post.action)
        fields = (post.keyId, post.nonce, post.signature)
        if all(f is None for f in fields) and post.expiresAfter is None:
            if session is None:
                raise AuthError(GatewayCode.SIGNATURE_REQUIRED)
            return self.check_session(session, scope, now_ms).account
        if any(f is None for f in fields):
            raise AuthError(GatewayCode.SIGNATURE_INCOMPLETE)
        key = self.verify(key_id=post.keyId, nonce=post.nonce, signature=post.signature,  # type: ignore[arg-type]
                          action=signed_action_object(frame), scope=scope, now_ms=now_ms,
                          expires_after_ms=post.expiresAfter)
        if session is not None and key.account != session.account:
            raise AuthError(GatewayCode.OTHER_ACCOUNT, f"key of account {key.account} on a session of {session.account}")
        return key.account

    def authorize_signed_action(self, body: SignedAction, raw: bytes | str, now_ms: int) -> int:
        """A REST action (always signed) -> the account it acts for."""
        key = self.verify(key_id=body.keyId, nonce=body.nonce, signature=body.signature,
                          action=signed_action_object(raw), scope=required_scope(body.action),
                          now_ms=now_ms, expires_after_ms=body.expiresAfter)
        return key.account

    def check_subscription(self, subscription: Subscription, session: Session | None, now_ms: int) -> None:
        """Public channels: always allowed. Private ones: a session whose key can ``read``,
        for its own account only."""
        if not is_private(subscription):
            return
        if session is None:
            raise AuthError(GatewayCode.NOT_LOGGED_ON)
        account = subscription.account  # type: ignore[union-attr]
        if account is not None and account != session.account:
            raise AuthError(GatewayCode.OTHER_ACCOUNT, f"asked for account {account}, logged on as {session.account}")
        self.check_session(session, "read", now_ms)
