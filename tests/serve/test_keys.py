"""API keys: shown once, stored as a salted hash, scopes and gallery grants, revocation; and the
`facerec keys` commands."""

from __future__ import annotations

import stat

import pytest

from facerec.cli import main
from facerec.serve.keys import (
    EMBEDDINGS_READ,
    ApiKey,
    InvalidKey,
    KeyStore,
    KeyStoreError,
    gallery_grants,
    parse_scopes,
    split_token,
)


@pytest.fixture
def store(tmp_path):
    return KeyStore(tmp_path / "data")


def test_a_key_authenticates_and_only_its_salted_hash_is_stored(store):
    key, token = store.create(frozenset({"detect", "embed"}), (), "ci")
    assert store.authenticate(token) == key
    key_id, secret = split_token(token)
    assert key_id == key.id and len(secret) >= 40
    stored = store.path.read_bytes()
    assert secret.encode() not in stored and token.encode() not in stored
    _, same_scopes = store.create(frozenset({"detect", "embed"}), (), "ci")
    assert same_scopes != token  # random secret, random salt: no two keys alike


def test_keys_file_is_private(store):
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "unknown API key"),  # right id, wrong secret
        (lambda t: t.replace("fr_", "fr_00", 1), "unknown API key"),  # unknown id
        (lambda t: "Bearer", "malformed API key"),
        (lambda t: t.replace("fr_", "xx_", 1), "malformed API key"),
    ],
)
def test_wrong_or_malformed_keys_are_refused(store, mangle, message):
    _, token = store.create(frozenset({"detect"}))
    with pytest.raises(InvalidKey, match=message):
        store.authenticate(mangle(token))


def test_a_revoked_key_is_refused_and_cannot_be_revoked_twice(store):
    key, token = store.create(frozenset({"detect"}))
    assert store.revoke(key.id).revoked
    with pytest.raises(InvalidKey, match="revoked"):
        store.authenticate(token)
    with pytest.raises(KeyStoreError, match="already revoked"):
        store.revoke(key.id)
    with pytest.raises(KeyStoreError, match="no API key with id nope"):
        store.revoke("nope")
    assert store.active_count() == 0 and [k.id for k in store.list()] == [key.id]


def test_scopes_are_checked_and_admin_does_not_read_embeddings():
    assert parse_scopes("detect, embed") == {"detect", "embed"}
    with pytest.raises(KeyStoreError, match="unknown scope"):
        parse_scopes("detect,everything")
    with pytest.raises(KeyStoreError, match="at least one scope"):
        parse_scopes(" , ")
    key = ApiKey("k", "", frozenset({"admin"}), (), "")
    assert key.allows("detect") and key.allows("delete") and not key.allows(EMBEDDINGS_READ)
    assert key.allows_gallery("any")


def test_gallery_scopes_need_named_galleries_or_an_explicit_all():
    assert gallery_grants(frozenset({"detect"}), [], False) == ()
    assert gallery_grants(frozenset({"search"}), ["team", "team"], False) == ("team",)
    assert gallery_grants(frozenset({"search"}), [], True) is None
    with pytest.raises(KeyStoreError, match="act on galleries"):
        gallery_grants(frozenset({"search", "enroll"}), [], False)
    with pytest.raises(KeyStoreError, match="not both"):
        gallery_grants(frozenset({"search"}), ["team"], True)


def test_gallery_grants_limit_a_key(store):
    key, _ = store.create(frozenset({"search"}), ("team",))
    assert key.allows_gallery("team") and not key.allows_gallery("other")
    everywhere, _ = store.create(frozenset({"search"}), None)
    assert everywhere.allows_gallery("other")


def test_keys_commands(tmp_path, capsys):
    data = str(tmp_path / "data")
    assert (
        main(["keys", "create", "--scope", "search,enroll", "--gallery", "team", "--name", "app", "--data-dir", data])
        == 0
    )
    out, err = capsys.readouterr()
    token = out.strip()
    key_id, secret = split_token(token)
    assert "shown once" in err and key_id in err
    assert main(["keys", "list", "--data-dir", data]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "enroll,search / team" in listing and "active" in listing and secret not in listing
    assert main(["keys", "revoke", key_id, "--data-dir", data]) == 0
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(InvalidKey, match="revoked"):
        KeyStore(data).authenticate(token)


def test_keys_command_errors_are_clear(tmp_path, capsys):
    data = str(tmp_path / "data")
    assert main(["keys", "create", "--scope", "detect,root", "--data-dir", data]) == 2
    assert "unknown scope(s) root" in capsys.readouterr().err
    assert main(["keys", "create", "--scope", "enroll", "--data-dir", data]) == 2
    assert "--all-galleries" in capsys.readouterr().err
    assert main(["keys", "list", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no API keys" in capsys.readouterr().err


def test_a_verified_secret_skips_the_stretching_but_no_check(store, monkeypatch):
    from facerec.serve import keys as keys_module

    stretched = []
    digest = keys_module._digest
    monkeypatch.setattr(keys_module, "_digest", lambda *a: stretched.append(a[0]) or digest(*a))
    key, token = store.create(frozenset({"detect"}))
    other, other_token = store.create(frozenset({"embed"}))
    stretched.clear()
    assert [store.authenticate(token) for _ in range(3)] == [key] * 3
    assert len(stretched) == 1  # PBKDF2 once, then the remembered keyed hash
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(InvalidKey, match="unknown API key"):
        store.authenticate(wrong)
    assert len(stretched) == 2  # another secret for a known id is stretched and refused
    assert store.authenticate(other_token) == other and len(stretched) == 3
    KeyStore(store.path.parent).revoke(key.id)  # as `facerec keys revoke` in another process
    with pytest.raises(InvalidKey, match="revoked"):
        store.authenticate(token)
    assert token.split("_")[2].encode() not in b"".join(store._verified.values())
