"""Galleries over HTTP, tested as a client sees them: a real `facerec serve` process on loopback
with an encrypted gallery store, real keys, LFW photos; the audit log read from its file."""

from __future__ import annotations

import json

import pytest
from served import assert_error, auth, files, lfw, start_server

from conftest import needs_lfw, needs_mtcnn
from facerec.cli import main
from facerec.serve.audit import AUDIT_FILE
from facerec.serve.http.settings import ServiceSettings
from facerec.serve.keys import KeyStore
from facerec.serve.store import KEY_ENV, new_key_text, open_store

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = [needs_mtcnn, needs_lfw]

GALLERY = "people"
BUSH, POWELL = "George_W_Bush", "Colin_Powell"
STRANGER = lfw("Jennifer_Lopez", 1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("galleries") / "data"


@pytest.fixture(scope="module")
def key_file(data_dir):
    path = data_dir.parent / "store.key"
    path.write_text(new_key_text() + "\n")
    return path


@pytest.fixture(scope="module")
def keys(data_dir):
    """Per role: (key id, token). Gallery scopes are granted the gallery 'people' unless named."""
    store = KeyStore(data_dir)
    roles = {
        "admin": ({"admin"}, ()),
        "operator": ({"enroll", "delete", "search"}, (GALLERY,)),
        "searcher": ({"search"}, (GALLERY,)),
        "elsewhere": ({"enroll", "delete", "search"}, ("other",)),
    }
    made = {role: store.create(frozenset(scopes), grants, role) for role, (scopes, grants) in roles.items()}
    return {role: (key.id, token) for role, (key, token) in made.items()}


def serve(data_dir, key_file):
    return start_server(data_dir, "--store-key-file", str(key_file), "--model", "fast")


@pytest.fixture(scope="module")
def server(data_dir, key_file, keys):
    server = serve(data_dir, key_file)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def as_(keys, role: str) -> dict[str, str]:
    return auth(keys[role][1])


def photos(name: str, *numbers: int) -> list:
    return files(*(lfw(name, n).read_bytes() for n in numbers))


def search(client, keys, image, role: str = "searcher", **options) -> dict:
    response = client.post(f"/v1/galleries/{GALLERY}/search", headers=as_(keys, role), files=files(image), data=options)
    assert response.status_code == 200, response.text
    return response.json()


def longest_number_list(value) -> int:
    """The most numbers in one list anywhere in a JSON value: a vector would be one of 128."""
    if isinstance(value, dict):
        return max((longest_number_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        numbers = sum(isinstance(v, (int, float)) for v in value)
        return max([numbers, *(longest_number_list(v) for v in value)])
    return 0


@pytest.fixture(scope="module")
def enrolled(client, keys):
    """The gallery with two people, two photos each: the faces' ids by subject."""
    response = client.post("/v1/galleries", headers=as_(keys, "admin"), json={"name": GALLERY})
    assert response.status_code == 201, response.text
    assert response.json()["digest"] and response.json()["subjects"] == 0
    face_ids = {}
    for person in (BUSH, POWELL):
        response = client.post(
            f"/v1/galleries/{GALLERY}/subjects", headers=as_(keys, "operator"), json={"name": person}
        )
        assert response.status_code == 201, response.text
        metadata = json.dumps({"source": "lfw"})
        url = f"/v1/galleries/{GALLERY}/subjects/{person}/faces"
        response = client.post(
            url, headers=as_(keys, "operator"), files=photos(person, 1, 2), data={"metadata": metadata}
        )
        assert response.status_code == 201, response.text
        faces = response.json()["faces"]
        assert [face["metadata"] for face in faces] == [{"source": "lfw"}] * 2
        face_ids[person] = [face["id"] for face in faces]
    return face_ids


def test_a_third_photo_finds_its_subject_and_a_stranger_is_unknown(client, keys, enrolled):
    answer = search(client, keys, lfw(BUSH, 3).read_bytes())
    (face,) = answer["faces"]
    assert face["subject"] == BUSH and face["known"] and face["score"] >= answer["threshold"]
    assert face["matches"][0]["face_id"] in enrolled[BUSH] and answer["threshold_source"].startswith("model card")
    stranger = search(client, keys, STRANGER.read_bytes(), top_k="1")["faces"][0]
    assert stranger["subject"] == "unknown" and not stranger["known"] and len(stranger["matches"]) == 1
    # the request's threshold comes first: at -1 everyone is someone
    assert search(client, keys, STRANGER.read_bytes(), threshold="-1")["faces"][0]["known"]
    every = search(client, keys, lfw(POWELL, 3).read_bytes(), all_faces="true")
    assert every["faces"] and every["faces"][0]["subject"] == POWELL


def test_listings_show_names_and_counts_never_vectors(client, keys, enrolled):
    galleries = client.get("/v1/galleries", headers=as_(keys, "searcher")).json()["galleries"]
    assert [(g["name"], g["subjects"], g["faces"]) for g in galleries] == [(GALLERY, 2, 4)]
    assert client.get("/v1/galleries", headers=as_(keys, "elsewhere")).json() == {"galleries": []}
    subjects = client.get(f"/v1/galleries/{GALLERY}/subjects", headers=as_(keys, "operator")).json()["subjects"]
    assert {s["name"] for s in subjects} == {BUSH, POWELL}
    answer = search(client, keys, lfw(BUSH, 3).read_bytes())
    assert '"embedding":' not in json.dumps(answer) and longest_number_list(answer) < 16


def test_scopes_grants_and_unknown_names(client, keys, enrolled):
    url = f"/v1/galleries/{GALLERY}"
    response = client.post(f"{url}/subjects", headers=as_(keys, "searcher"), json={"name": "x"})
    assert "enroll" in assert_error(response, 403, "forbidden")["message"]
    assert_error(client.post("/v1/galleries", headers=as_(keys, "operator"), json={"name": "g"}), 403, "forbidden")
    assert_error(client.delete(url, headers=as_(keys, "operator")), 403, "forbidden")
    response = client.post(f"{url}/search", headers=as_(keys, "elsewhere"), files=files(STRANGER.read_bytes()))
    assert GALLERY in assert_error(response, 403, "forbidden")["message"]
    response = client.post("/v1/galleries/nobody/search", headers=as_(keys, "admin"), files=files(b"x"))
    assert_error(response, 404, "unknown_gallery")
    response = client.post(f"{url}/subjects/nobody/faces", headers=as_(keys, "operator"), files=photos(BUSH, 4))
    assert_error(response, 404, "unknown_subject")
    assert_error(client.delete(f"{url}/faces/999999", headers=as_(keys, "operator")), 404, "unknown_face")
    response = client.post(f"{url}/subjects", headers=as_(keys, "operator"), json={"name": BUSH})
    assert_error(response, 409, "already_exists")
    assert_error(
        client.post("/v1/galleries", headers=as_(keys, "admin"), json={"name": GALLERY}), 409, "already_exists"
    )


def test_the_gallery_threshold_comes_after_the_request_and_another_model_is_refused(
    client, keys, enrolled, data_dir, key_file
):
    admin = as_(keys, "admin")
    assert client.post("/v1/galleries", headers=admin, json={"name": "strict", "threshold": 0.99}).status_code == 201
    assert client.post("/v1/galleries/strict/subjects", headers=admin, json={"name": BUSH}).status_code == 201
    url = f"/v1/galleries/strict/subjects/{BUSH}/faces"
    assert client.post(url, headers=admin, files=photos(BUSH, 1)).status_code == 201
    probe = files(lfw(BUSH, 3).read_bytes())
    strict = client.post("/v1/galleries/strict/search", headers=admin, files=probe).json()
    assert (strict["threshold"], strict["threshold_source"], strict["faces"][0]["subject"]) == (
        0.99,
        "gallery",
        "unknown",
    )
    asked = client.post("/v1/galleries/strict/search", headers=admin, files=probe, data={"threshold": "0.1"}).json()
    assert asked["threshold_source"] == "request" and asked["faces"][0]["subject"] == BUSH
    with open_store(data_dir / "gallery.db", key_file) as store:  # another process's gallery, another model
        store.create_gallery("foreign", "other", "0" * 64, {}, 128)
    response = client.post("/v1/galleries/foreign/search", headers=admin, files=probe)
    assert "other" in assert_error(response, 422, "wrong_model")["message"]


def test_without_a_key_or_a_store_file_there_is_no_store(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert not ServiceSettings(data_dir=tmp_path).store_configured()
    assert ServiceSettings(data_dir=tmp_path, store_plaintext=True).store_configured()
    (tmp_path / "gallery.db").touch()
    assert ServiceSettings(data_dir=tmp_path).store_configured()


def test_a_gallery_created_to_keep_crops_keeps_each_enrolled_face(client, keys, enrolled, data_dir, key_file):
    """The crops a later model re-embeds (`facerec gallery migrate`): kept in the model-independent
    frame, sealed like the vectors, only where the gallery was created to keep them."""
    _, token = KeyStore(data_dir).create(frozenset({"enroll"}), ("kept",), "kept crops")
    created = client.post("/v1/galleries", headers=as_(keys, "admin"), json={"name": "kept", "keep_crops": True})
    assert created.status_code == 201 and created.json()["keep_crops"] is True
    assert client.post("/v1/galleries/kept/subjects", headers=auth(token), json={"name": BUSH}).status_code == 201
    added = client.post(f"/v1/galleries/kept/subjects/{BUSH}/faces", headers=auth(token), files=photos(BUSH, 4))
    assert added.status_code == 201, added.text
    face_id = added.json()["faces"][0]["id"]
    with open_store(data_dir / "gallery.db", key_file) as store:
        crop = store.crops("kept", [face_id])[0]
        assert store.crops(GALLERY, [f.id for f in store.faces(GALLERY)][:1]) == [None]
    from facerec.align.kept import KEPT_SIZE

    assert crop.shape == (KEPT_SIZE, KEPT_SIZE, 3) and crop.std() > 10  # a face, not a blank


def test_a_face_can_be_deleted(client, keys, enrolled):
    url = f"/v1/galleries/{GALLERY}/subjects/{POWELL}/faces"
    added = client.post(url, headers=as_(keys, "operator"), files=photos(POWELL, 4)).json()["faces"][0]["id"]
    response = client.delete(f"/v1/galleries/{GALLERY}/faces/{added}", headers=as_(keys, "operator"))
    assert response.status_code == 200 and response.json()["deleted"] == added
    assert_error(
        client.delete(f"/v1/galleries/{GALLERY}/faces/{added}", headers=as_(keys, "operator")), 404, "unknown_face"
    )


def test_a_wrong_store_key_stops_the_start(data_dir, tmp_path, enrolled, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(new_key_text())
    for options in ([], ["--store-key-file", str(wrong)]):
        assert main(["serve", "--data-dir", str(data_dir), "--port", "1", *options]) == 2
        message = capsys.readouterr().err
        assert "gallery store" in message and "--store-key-file" in message


def test_an_erased_subject_is_never_found_again_even_after_a_restart(
    client, keys, enrolled, server, data_dir, key_file
):
    response = client.delete(f"/v1/galleries/{GALLERY}/subjects/{BUSH}", headers=as_(keys, "operator"))
    assert response.status_code == 200 and sorted(response.json()["faces"]) == sorted(enrolled[BUSH])
    probe = lfw(BUSH, 3).read_bytes()
    assert all(m["subject"] != BUSH for m in search(client, keys, probe, top_k="100")["faces"][0]["matches"])
    server.stop()
    again = serve(data_dir, key_file)
    try:
        with httpx.Client(base_url=again.url, timeout=60) as fresh:
            face = search(fresh, keys, probe, top_k="100")["faces"][0]
            assert face["subject"] != BUSH and all(m["subject"] != BUSH for m in face["matches"])
            assert_error(
                fresh.delete(f"/v1/galleries/{GALLERY}/subjects/{BUSH}", headers=as_(keys, "operator")),
                404,
                "unknown_subject",
            )
    finally:
        again.stop()


def test_the_audit_log_names_who_did_what_and_holds_no_vectors(data_dir, keys, enrolled):
    lines = (data_dir / AUDIT_FILE).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all({"when", "who", "action", "gallery"} <= set(e) for e in entries)
    actions = {(e["who"], e["action"]) for e in entries}
    operator, admin, searcher = keys["operator"][0], keys["admin"][0], keys["searcher"][0]
    assert {(admin, "create_gallery"), (operator, "add_faces"), (searcher, "search")} <= actions
    assert {(operator, "delete_subject"), (operator, "delete_face"), (operator, "create_subject")} <= actions
    erased = next(e for e in entries if e["action"] == "delete_subject")
    assert erased["subject"] == BUSH and sorted(erased["faces"]) == sorted(enrolled[BUSH])
    for entry in entries:  # ids and names only: no image, no vector
        assert not any(isinstance(v, float) for v in entry.values())
        assert longest_number_list(entry) < 16 and len(json.dumps(entry)) < 500
