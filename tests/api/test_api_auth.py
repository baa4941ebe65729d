"""Keys, signatures, nonces and sessions.

Known answers are computed here independently of ``api.auth``: the payload is written out by
hand from gateway.md §3, the canonical JSON by hand or with ``json.dumps``, the signature with
``cryptography``/``hmac`` directly; Ed25519 is also checked on RFC 8032's first test vector.

gateway.md §6 catalogue items checked here (at the auth layer):
  7  bad signature (a flipped bit, a wrong key, another network): refused, nonce not consumed;
  8  a replayed request; a nonce too old, too far ahead, evicted or reused; 101 nonces;
  9  a replay after a restart: the nonce state survives export() -> JSON -> load();
 10  a revoked or expired key; a read-only key that trades;
 11  an action or a subscription for another account;
 23  a client clock 5 s fast: a specific nonce error, not a silent failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api import auth, errors
from api import protocol as p

G = errors.GatewayCode
NETWORK = "local"
NOW_MS = 1_700_000_000_000
SEED_ALICE = bytes(range(32))
SEED_MALLORY = bytes(range(1, 33))
HMAC_SECRET_BOB = b"bob-secret-0123456789abcdef-0123"
SEALING_KEY = bytes(32)
ACCOUNT_ALICE, ACCOUNT_BOB = 1, 2
CANCEL_NVDA_OID_42 = p.Cancel(market="NVDA", oid=42)


def make_auth(**nonce_params) -> tuple[auth.Authenticator, auth.Signer, auth.Signer]:
    keys = auth.KeyStore(sealing_key=SEALING_KEY)
    alice = keys.create_ed25519(ACCOUNT_ALICE, ("read", "trade"), key_id="alice-trade", seed=SEED_ALICE)
    bob = keys.create_hmac(ACCOUNT_BOB, ("read", "trade"), key_id="bob-hmac", secret=HMAC_SECRET_BOB)
    return auth.Authenticator(NETWORK, keys, auth.NonceStore(**nonce_params)), alice, bob


def verify(authn: auth.Authenticator, signer: auth.Signer, nonce: int, action=CANCEL_NVDA_OID_42, *,
           now_ms: int = NOW_MS, signature: str | None = None, expires_after_ms: int | None = None):
    sig = signature if signature is not None else signer.sign(NETWORK, nonce, action, expires_after_ms)
    return authn.verify(key_id=signer.key_id, nonce=nonce, signature=sig, action=action, scope="trade",
                        now_ms=now_ms, expires_after_ms=expires_after_ms)


def code_of(call) -> G:
    with pytest.raises(auth.AuthError) as caught:
        call()
    return caught.value.code


# ------------------------------------------------------------------ known answers


def test_canonical_json_is_sorted_compact_utf8_and_matches_json_dumps():
    action = {"type": "place", "market": "NVDA", "side": "buy", "size": "1", "cloid": "é\n\"x\"", "expiresAt": None}
    expected = json.dumps(action, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert auth.canonical_json(action) == expected
    assert auth.canonical_json(CANCEL_NVDA_OID_42) == b'{"cloid":null,"market":"NVDA","oid":42,"type":"cancel"}'


def test_canonical_json_refuses_floats():
    with pytest.raises(ValueError):
        auth.canonical_json({"type": "place", "size": 1.5})


def test_signed_payload_is_the_exact_bytes_of_the_spec():
    digest = hashlib.sha256(b'{"cloid":null,"market":"NVDA","oid":42,"type":"cancel"}').hexdigest()
    expected = f"AFTERHOURS-SIG-v1\nlocal\nalice-trade\n{NOW_MS}\n0\n{digest}".encode()
    assert auth.signed_payload("local", "alice-trade", NOW_MS, None, CANCEL_NVDA_OID_42) == expected
    with_expiry = auth.signed_payload("local", "alice-trade", NOW_MS, NOW_MS + 5000, CANCEL_NVDA_OID_42)
    assert with_expiry.split(b"\n")[4] == str(NOW_MS + 5000).encode()


def test_ed25519_signature_matches_the_library_on_the_hand_built_payload():
    digest = hashlib.sha256(b'{"cloid":null,"market":"NVDA","oid":42,"type":"cancel"}').hexdigest()
    payload = f"AFTERHOURS-SIG-v1\nlocal\nalice-trade\n{NOW_MS}\n0\n{digest}".encode()
    expected = Ed25519PrivateKey.from_private_bytes(SEED_ALICE).sign(payload).hex()
    _, alice, _ = make_auth()
    assert alice.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42) == expected


def test_hmac_signature_matches_the_library_on_the_hand_built_payload():
    digest = hashlib.sha256(b'{"cloid":null,"market":"NVDA","oid":42,"type":"cancel"}').hexdigest()
    payload = f"AFTERHOURS-SIG-v1\nlocal\nbob-hmac\n{NOW_MS}\n0\n{digest}".encode()
    expected = hmac.new(HMAC_SECRET_BOB, payload, hashlib.sha256).hexdigest()
    authn, _, bob = make_auth()
    assert bob.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42) == expected
    assert verify(authn, bob, NOW_MS, signature=expected).account == ACCOUNT_BOB


def test_rfc8032_test_vector_1_verifies():
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd"
                 "25bf5f0595bbe24655141438e7a100b")
    keys = auth.KeyStore()
    key = auth.ApiKey("rfc8032", 9, "ed25519", public, ("read",))
    keys.add(key)
    keys.verify_signature(key, b"", signature)
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert auth.Signer("rfc8032", "ed25519", seed).public_key == public


def test_a_frame_signed_over_what_was_sent_verifies_whatever_its_key_order():
    authn, alice, _ = make_auth()
    sent = {"oid": 42, "type": "cancel", "market": "NVDA"}  # no cloid: the client left it out
    sig = alice.sign(NETWORK, NOW_MS, sent)
    frame = ('{"method":"post","id":1,"action":{ "oid": 42, "type": "cancel", "market": "NVDA" },'
             f'"keyId":"alice-trade","nonce":{NOW_MS},"signature":"{sig}"}}').encode()
    post = p.decode_request(frame)
    assert authn.authorize_post(post, frame, None, NOW_MS) == ACCOUNT_ALICE


def test_a_client_built_post_verifies_on_the_server():
    authn, alice, _ = make_auth()
    frame = p.encode(alice.post(NETWORK, 5, p.Batch([p.Place(market="NVDA", side="buy", size="1", price="1")]), NOW_MS))
    assert authn.authorize_post(p.decode_request(frame), frame, None, NOW_MS) == ACCOUNT_ALICE
    body = p.encode(alice.signed_action(NETWORK, CANCEL_NVDA_OID_42, NOW_MS + 1))
    assert authn.authorize_signed_action(p.decode_signed_action(body), body, NOW_MS) == ACCOUNT_ALICE


# ------------------------------------------------------------ item 7: bad signatures


def _flip_bit(signature_hex: str) -> str:
    raw = bytearray(bytes.fromhex(signature_hex))
    raw[10] ^= 0x04
    return raw.hex()


@pytest.mark.parametrize("signer_name", ["alice", "bob"])
@pytest.mark.parametrize("how", ["flipped bit", "wrong key", "other network", "other action", "other nonce"])
def test_bad_signatures_are_refused_and_consume_no_nonce(signer_name, how):
    authn, alice, bob = make_auth()
    signer = alice if signer_name == "alice" else bob
    good = signer.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42)
    bad = {
        "flipped bit": lambda: _flip_bit(good),
        "wrong key": lambda: (auth.Signer(signer.key_id, "ed25519", SEED_MALLORY) if signer is alice
                              else auth.Signer(signer.key_id, "hmac", b"m" * 32)).sign(NETWORK, NOW_MS,
                                                                                      CANCEL_NVDA_OID_42),
        "other network": lambda: signer.sign("testnet", NOW_MS, CANCEL_NVDA_OID_42),
        "other action": lambda: signer.sign(NETWORK, NOW_MS, p.Cancel(market="NVDA", oid=43)),
        "other nonce": lambda: signer.sign(NETWORK, NOW_MS + 1, CANCEL_NVDA_OID_42),
    }[how]()
    assert code_of(lambda: verify(authn, signer, NOW_MS, signature=bad)) == G.BAD_SIGNATURE
    assert verify(authn, signer, NOW_MS, signature=good).key_id == signer.key_id  # nonce still free


@pytest.mark.parametrize("signature, code", [
    ("ab" * 63, G.SIGNATURE_MALFORMED),
    ("ab" * 65, G.SIGNATURE_MALFORMED),
    ("zz" * 64, G.SIGNATURE_MALFORMED),
])
def test_malformed_signatures_have_their_own_code(signature, code):
    authn, alice, _ = make_auth()
    assert code_of(lambda: verify(authn, alice, NOW_MS, signature=signature)) == code


def test_an_unknown_key_is_refused():
    authn, _, _ = make_auth()
    stranger = auth.Signer("nobody", "ed25519", SEED_MALLORY)
    assert code_of(lambda: verify(authn, stranger, NOW_MS)) == G.UNKNOWN_KEY


def test_an_expired_request_is_refused_without_consuming_its_nonce():
    authn, alice, _ = make_auth()
    late = lambda: verify(authn, alice, NOW_MS, expires_after_ms=NOW_MS - 1)  # noqa: E731
    assert code_of(late) == G.REQUEST_EXPIRED
    assert verify(authn, alice, NOW_MS, expires_after_ms=NOW_MS)


# ------------------------------------------------------------------- item 8: nonces


@pytest.mark.parametrize("offset_ms, code", [
    (-30_000, None), (-30_001, G.NONCE_TOO_OLD), (1_000, None), (1_001, G.NONCE_TOO_NEW),
    (5_000, G.NONCE_TOO_NEW),  # item 23: a client clock 5 s fast
])
def test_the_nonce_window_is_30_s_back_and_1_s_ahead(offset_ms, code):
    authn, alice, _ = make_auth()
    call = lambda: verify(authn, alice, NOW_MS + offset_ms)  # noqa: E731
    if code is None:
        call()
    else:
        assert code_of(call) == code


def test_a_replayed_request_is_refused():
    authn, alice, _ = make_auth()
    signature = alice.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42)
    verify(authn, alice, NOW_MS, signature=signature)
    assert code_of(lambda: verify(authn, alice, NOW_MS, signature=signature)) == G.NONCE_REUSED


def test_nonces_are_per_key():
    authn, alice, bob = make_auth()
    verify(authn, alice, NOW_MS)
    verify(authn, bob, NOW_MS)


def test_101_nonces_in_the_window_evict_the_smallest():
    store = auth.NonceStore()
    for n in range(101):
        store.consume("k", NOW_MS - 20_000 + n, NOW_MS)
    assert store.check("k", NOW_MS - 20_000, NOW_MS) == G.NONCE_EVICTED  # the evicted one
    assert store.check("k", NOW_MS - 20_001, NOW_MS) == G.NONCE_EVICTED  # below it
    assert store.check("k", NOW_MS - 19_999, NOW_MS) == G.NONCE_REUSED  # kept
    assert store.export().keys[0].highest_evicted == NOW_MS - 20_000
    assert len(store.export().keys[0].kept) == 100


def test_when_100_are_kept_a_nonce_below_all_of_them_is_refused():
    store = auth.NonceStore()
    for n in range(100):
        store.consume("k", NOW_MS - 10_000 + 2 * n, NOW_MS)
    assert store.check("k", NOW_MS - 10_001, NOW_MS) == G.NONCE_BELOW_KEPT
    with pytest.raises(auth.AuthError):
        store.consume("k", NOW_MS - 10_001, NOW_MS)
    assert len(store.export().keys[0].kept) == 100  # nothing recorded
    store.consume("k", NOW_MS - 9_999, NOW_MS)  # between two kept: accepted, evicts the smallest
    assert store.check("k", NOW_MS - 10_000, NOW_MS) == G.NONCE_EVICTED


def test_nonces_out_of_range_are_refused():
    store = auth.NonceStore()
    assert store.check("k", -1, NOW_MS) == G.NONCE_OUT_OF_RANGE
    assert store.check("k", 1 << 63, 1 << 63) == G.NONCE_OUT_OF_RANGE


# ------------------------------------------------------------ item 9: across restarts


def test_the_nonce_state_survives_export_and_load():
    authn, alice, _ = make_auth()
    signature = alice.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42)
    verify(authn, alice, NOW_MS, signature=signature)
    for n in range(1, 101):
        verify(authn, alice, NOW_MS + n - 20_000 if n > 50 else NOW_MS + n - 29_000)
    journaled = msgspec.json.encode(authn.nonces.export())
    restored = auth.NonceStore.load(msgspec.json.decode(journaled, type=auth.NonceState))
    assert restored.export() == authn.nonces.export()
    after = auth.Authenticator(NETWORK, authn.keys, restored)
    assert code_of(lambda: verify(after, alice, NOW_MS, signature=signature)) == G.NONCE_REUSED
    assert code_of(lambda: verify(after, alice, NOW_MS - 28_999)) == G.NONCE_EVICTED


def test_nonce_export_is_deterministic_and_sorted_by_key():
    store = auth.NonceStore()
    for key_id in ("zeta", "alpha", "mid"):
        store.consume(key_id, NOW_MS, NOW_MS)
    assert [k.key_id for k in store.export().keys] == ["alpha", "mid", "zeta"]


# ----------------------------------------------------------- item 10: key state


def test_a_revoked_key_is_refused():
    authn, alice, _ = make_auth()
    authn.keys.revoke(alice.key_id)
    assert code_of(lambda: verify(authn, alice, NOW_MS)) == G.KEY_REVOKED


def test_an_expired_key_is_refused():
    keys = auth.KeyStore()
    signer = keys.create_ed25519(1, ("trade",), key_id="short-lived", expires_at_ms=NOW_MS, seed=SEED_ALICE)
    authn = auth.Authenticator(NETWORK, keys, auth.NonceStore())
    assert verify(authn, signer, NOW_MS - 1, now_ms=NOW_MS - 1)
    assert code_of(lambda: verify(authn, signer, NOW_MS)) == G.KEY_EXPIRED


def test_a_read_only_key_cannot_trade_and_its_nonce_is_kept_free():
    keys = auth.KeyStore()
    reader = keys.create_ed25519(1, ("read",), key_id="reader", seed=SEED_ALICE)
    authn = auth.Authenticator(NETWORK, keys, auth.NonceStore())
    assert code_of(lambda: verify(authn, reader, NOW_MS)) == G.SCOPE_MISSING
    assert authn.nonces.check("reader", NOW_MS, NOW_MS) is None
    assert authn.logon(reader.logon(NETWORK, NOW_MS), NOW_MS).account == 1  # read is enough to log on


# ------------------------------------------------------------------- sessions, item 11


def test_logon_makes_a_session_and_a_second_logon_is_refused():
    authn, alice, _ = make_auth()
    session = authn.logon(alice.logon(NETWORK, NOW_MS), NOW_MS)
    assert session == auth.Session(ACCOUNT_ALICE, "alice-trade", NOW_MS)
    again = alice.logon(NETWORK, NOW_MS + 1)
    assert code_of(lambda: authn.logon(again, NOW_MS, current=session)) == G.ALREADY_LOGGED_ON


def test_a_replayed_logon_is_refused():
    authn, alice, _ = make_auth()
    logon = alice.logon(NETWORK, NOW_MS)
    authn.logon(logon, NOW_MS)
    assert code_of(lambda: authn.logon(logon, NOW_MS)) == G.NONCE_REUSED


def test_a_logon_signature_covers_the_logon_action_only():
    authn, alice, _ = make_auth()
    forged = p.Logon(alice.key_id, NOW_MS, alice.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42))
    assert code_of(lambda: authn.logon(forged, NOW_MS)) == G.BAD_SIGNATURE


def test_session_posts_need_no_signature_and_unsigned_posts_need_a_session():
    authn, alice, _ = make_auth()
    post = p.Post(id=1, action=CANCEL_NVDA_OID_42)
    frame = p.encode(post)
    assert code_of(lambda: authn.authorize_post(post, frame, None, NOW_MS)) == G.SIGNATURE_REQUIRED
    session = authn.logon(alice.logon(NETWORK, NOW_MS), NOW_MS)
    assert authn.authorize_post(post, frame, session, NOW_MS) == ACCOUNT_ALICE


def test_a_partly_signed_post_is_refused():
    authn, _, _ = make_auth()
    post = p.Post(id=1, action=CANCEL_NVDA_OID_42, keyId="alice-trade", nonce=NOW_MS)
    assert code_of(lambda: authn.authorize_post(post, p.encode(post), None, NOW_MS)) == G.SIGNATURE_INCOMPLETE


def test_a_session_loses_its_rights_when_its_key_is_revoked():
    authn, alice, _ = make_auth()
    session = authn.logon(alice.logon(NETWORK, NOW_MS), NOW_MS)
    authn.keys.revoke(alice.key_id)
    post = p.Post(id=1, action=CANCEL_NVDA_OID_42)
    assert code_of(lambda: authn.authorize_post(post, p.encode(post), session, NOW_MS)) == G.KEY_REVOKED
    assert code_of(lambda: authn.check_subscription(p.AccountSub(), session, NOW_MS)) == G.KEY_REVOKED


def test_a_signed_post_for_another_account_on_a_session_is_refused():
    authn, alice, bob = make_auth()
    session = authn.logon(alice.logon(NETWORK, NOW_MS), NOW_MS)
    post = bob.post(NETWORK, 1, CANCEL_NVDA_OID_42, NOW_MS)
    assert code_of(lambda: authn.authorize_post(post, p.encode(post), session, NOW_MS)) == G.OTHER_ACCOUNT


def test_private_subscriptions_need_a_session_for_the_same_account():
    authn, alice, _ = make_auth()
    authn.check_subscription(p.L2DeltaSub(market="NVDA"), None, NOW_MS)  # public: fine
    assert code_of(lambda: authn.check_subscription(p.UserFillsSub(), None, NOW_MS)) == G.NOT_LOGGED_ON
    session = authn.logon(alice.logon(NETWORK, NOW_MS), NOW_MS)
    authn.check_subscription(p.UserFillsSub(), session, NOW_MS)
    authn.check_subscription(p.PositionsSub(account=ACCOUNT_ALICE), session, NOW_MS)
    other = p.PositionsSub(account=ACCOUNT_BOB)
    assert code_of(lambda: authn.check_subscription(other, session, NOW_MS)) == G.OTHER_ACCOUNT


# ------------------------------------------------------------------------- key store


def test_hmac_secrets_are_stored_sealed_and_reload_with_the_sealing_key():
    authn, _, bob = make_auth()
    exported = msgspec.json.encode(authn.keys.export())
    assert HMAC_SECRET_BOB not in exported and HMAC_SECRET_BOB.hex().encode() not in exported
    records = msgspec.json.decode(exported, type=list[auth.ApiKey])
    assert all(b"bob-secret" not in key.material for key in records)
    reloaded = auth.Authenticator(NETWORK, auth.KeyStore.load(records, SEALING_KEY), auth.NonceStore())
    assert verify(reloaded, bob, NOW_MS).account == ACCOUNT_BOB


def test_hmac_keys_need_a_sealing_key():
    with pytest.raises(ValueError):
        auth.KeyStore().create_hmac(1, secret=HMAC_SECRET_BOB)


def test_api_key_records_reject_bad_scopes_and_ids():
    with pytest.raises(ValueError):
        auth.ApiKey("k", 1, "ed25519", bytes(32), ("withdraw",))
    with pytest.raises(ValueError):
        auth.ApiKey("k", 1, "ed25519", bytes(32), ("trade", "read"))  # not sorted
    with pytest.raises(ValueError):
        auth.ApiKey("bad id", 1, "ed25519", bytes(32), ("read",))


def test_the_demo_key_has_every_scope_and_its_credential_line_round_trips():
    keys = auth.KeyStore()
    signer = auth.create_demo_key(keys, account=1)
    assert keys.must_get(signer.key_id).scopes == ("read", "trade", "transfer")
    again = auth.Signer.parse(signer.export())
    assert again.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42) == signer.sign(NETWORK, NOW_MS, CANCEL_NVDA_OID_42)


def test_every_auth_failure_has_a_distinct_code():
    auth_codes = [c for c in G if 5100 <= c < 5200]
    assert len(auth_codes) == len(set(auth_codes)) >= 17
    assert len({errors.message_for(c) for c in auth_codes}) == len(auth_codes)
