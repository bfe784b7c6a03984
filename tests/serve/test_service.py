"""The face service, tested as a client sees it: a real `facerec serve` process on loopback,
real keys, real images; every kind of bad input is its own test."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from served import assert_error, auth, files, lfw, start_server

from conftest import needs_dlib, needs_lfw, needs_mtcnn
from facerec.cli import main
from facerec.serve.keys import KeyStore

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

# The server detects faces with MTCNN and runs the default model, the dlib reference.
pytestmark = [needs_mtcnn, needs_dlib]

README = Path(__file__).resolve().parents[2] / "README.md"
MAX_REQUEST = 2**20  # the test server's body limit: small, so an oversized request is cheap


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("service") / "data"


@pytest.fixture(scope="module")
def keys(data_dir):
    """One key per role, created before the server starts, in the file the server reads."""
    store = KeyStore(data_dir)
    roles = {
        "detect": {"detect"},
        "compare": {"detect", "embed"},
        "vectors": {"detect", "embed", "embeddings:read"},
        "admin": {"admin"},
    }
    made = {role: store.create(frozenset(scopes), (), role)[1] for role, scopes in roles.items()}
    # the README's demo key: its gallery scopes act on the gallery 'staff' only
    made["demo"] = store.create(frozenset({"detect", "embed", "enroll", "search"}), ("staff",), "demo")[1]
    return made


@pytest.fixture(scope="module")
def server(data_dir, keys):
    # A 50 ms wait budget lets concurrent requests meet in one model call even on a busy machine.
    options = ("--max-request-bytes", str(MAX_REQUEST), "--batch-wait-ms", "50", "--store-plaintext")
    server = start_server(data_dir, *options)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def encoded(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def gray(size: int = 160) -> bytes:
    return encoded(np.full((size, size, 3), 128, dtype=np.uint8))


# ---- health, readiness, docs, metrics ------------------------------------------------------
def test_health_ready_and_docs(client):
    assert client.get("/v1/health").json() == {"status": "ok"}
    ready = client.get("/v1/ready").json()
    assert ready["ready"] is True and ready["model"]["name"] == "dlib" and ready["model"]["detector"] == "mtcnn"
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/embed", "/v1/verify", "/v1/health", "/v1/ready", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/v1/verify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} == set(body)
    assert client.get("/docs").status_code == 200


def test_metrics_are_prometheus_text_for_admins(client, keys):
    client.post("/v1/detect", headers=auth(keys["detect"]), files=files(gray()))
    assert_error(client.get("/metrics", headers=auth(keys["detect"])), 403, "forbidden")
    response = client.get("/metrics", headers=auth(keys["admin"]))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert re.search(r'^facerec_requests_total\{endpoint="/v1/detect",method="POST",status="200"\} \d+$', text, re.M)
    assert "# TYPE facerec_request_duration_seconds histogram" in text
    assert "# TYPE facerec_batch_size histogram" in text and "facerec_ready 1" in text


# ---- keys and scopes -------------------------------------------------------------------------
def test_no_key_or_an_unknown_key_is_401(client, keys):
    error = assert_error(client.post("/v1/detect", files=files(gray())), 401, "unauthorized")
    assert "API key is required" in error["message"]
    forged = keys["detect"][:-4] + "AAAA"
    assert_error(client.post("/v1/detect", headers=auth(forged), files=files(gray())), 401, "unauthorized")
    response = client.post("/v1/detect", headers={"X-API-Key": "not-a-key"}, files=files(gray()))
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_key_without_the_scope_is_403(client, keys):
    assert client.post("/v1/detect", headers={"X-API-Key": keys["detect"]}, files=files(gray())).status_code == 200
    response = client.post("/v1/verify", headers=auth(keys["detect"]), files=files(gray(), gray()))
    assert "embed" in assert_error(response, 403, "forbidden")["message"]
    # vectors leave the server only for keys that hold embeddings:read explicitly
    for role in ("compare", "admin"):
        response = client.post("/v1/embed", headers=auth(keys[role]), files=files(gray()))
        assert "embeddings:read" in assert_error(response, 403, "forbidden")["message"]


def test_a_revoked_key_is_refused_on_the_next_request(client, data_dir):
    store = KeyStore(data_dir)  # another process than the server's, as `facerec keys revoke` is
    key, token = store.create(frozenset({"detect"}), (), "short-lived")
    assert client.post("/v1/detect", headers=auth(token), files=files(gray())).status_code == 200
    store.revoke(key.id)
    error = assert_error(client.post("/v1/detect", headers=auth(token), files=files(gray())), 401, "unauthorized")
    assert "revoked" in error["message"]


# ---- bad input: each kind is a clear 4xx ---------------------------------------------------
def test_not_an_image_is_422(client, keys):
    # named .jpg, but the content decides
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(b"%PDF-1.4 not a photo"))
    assert "not an image" in assert_error(response, 422, "not_an_image")["message"]


def test_a_truncated_jpeg_is_422(client, keys):
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    jpeg = encoded(noise, "JPEG", quality=90)
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(jpeg[: len(jpeg) // 2]))
    assert "truncated" in assert_error(response, 422, "corrupt_image")["message"]


def test_a_decompression_bomb_is_413_before_it_is_decoded(client, keys):
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")  # 81 megapixels in about 10 kB
    assert len(bomb.getvalue()) < 100_000
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(bomb.getvalue()))
    assert "9000x9000" in assert_error(response, 413, "image_too_large")["message"]


def test_an_oversized_request_is_413(client, keys):
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(b"\xff" * (MAX_REQUEST + 1)))
    assert_error(response, 413, "request_too_large")


def test_too_many_images_is_413(client, keys):
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(*[gray(16)] * 17))
    assert_error(response, 413, "too_many_images")


def test_malformed_json_is_400(client, keys):
    headers = {**auth(keys["detect"]), "Content-Type": "application/json"}
    assert_error(client.post("/v1/detect", headers=headers, content=b'{"images": ['), 400, "malformed_json")
    assert_error(client.post("/v1/detect", headers=headers, json={"images": "abc"}), 400, "bad_request")
    assert_error(client.post("/v1/detect", headers=headers, json={"images": ["@@@"]}), 400, "invalid_base64")


def test_another_body_type_is_415(client, keys):
    response = client.post("/v1/detect", headers={**auth(keys["detect"]), "Content-Type": "text/plain"}, content=b"x")
    assert_error(response, 415, "unsupported_media_type")


def test_no_face_where_one_is_required_is_422(client, keys):
    response = client.post("/v1/verify", headers=auth(keys["compare"]), files=files(gray(), gray()))
    assert assert_error(response, 422, "no_face")["message"] == "no face detected in images[0]"
    detected = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(gray())).json()
    assert detected["images"] == [{"width": 160, "height": 160, "faces": []}]  # detect reports, never refuses


def test_a_request_for_another_model_is_422(client, keys):
    response = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(gray()), data={"model": "fast"})
    assert "runs model 'dlib'" in assert_error(response, 422, "wrong_model")["message"]


def test_bad_options_are_422(client, keys):
    headers = auth(keys["compare"])
    assert_error(client.post("/v1/verify", headers=headers, files=files(gray())), 422, "wrong_image_count")
    response = client.post("/v1/verify", headers=headers, files=files(gray(), gray()), data={"several": "all"})
    assert_error(response, 422, "invalid_option")
    response = client.post("/v1/verify", headers=headers, files=files(gray(), gray()), data={"threshold": "high"})
    assert_error(response, 422, "invalid_option")


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/v2/detect"), 404, "not_found")
    assert_error(client.get("/v1/verify"), 405, "method_not_allowed")


# ---- real faces -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recognizer():
    from facerec.serve import FaceRecognizer

    return FaceRecognizer(device="cpu")


# People of LFW View 2 people fold 9, which the default model never saw; one face per image.
SAME = (lfw("George_W_Bush", 1), lfw("George_W_Bush", 2))
DIFFERENT = (lfw("George_W_Bush", 1), lfw("Jennifer_Lopez", 1))


@needs_lfw
@pytest.mark.parametrize("pair", [SAME, DIFFERENT], ids=["same", "different"])
def test_verify_decides_as_the_recognizer_does(client, keys, recognizer, pair):
    response = client.post("/v1/verify", headers=auth(keys["compare"]), files=files(*(p.read_bytes() for p in pair)))
    assert response.status_code == 200, response.text
    answer, expected = response.json(), recognizer.verify(*map(str, pair))
    assert answer["same"] == expected.same == (pair is SAME)
    assert answer["score"] == pytest.approx(expected.score, abs=1e-4)
    assert answer["threshold"] == pytest.approx(expected.threshold)
    assert answer["threshold_source"].startswith("model card")
    assert len(answer["faces"]) == 2 and answer["faces"][0]["quality"] is None  # scored when asked (quality=true)


@needs_lfw
def test_embed_returns_the_vectors_of_every_face_as_base64_json(client, keys, recognizer):
    images = [base64.b64encode(p.read_bytes()).decode() for p in SAME]
    response = client.post("/v1/embed", headers=auth(keys["vectors"]), json={"images": images})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["embedding_size"] == 128
    for image, path in zip(answer["images"], SAME, strict=True):
        (face,) = image["faces"]
        vector = np.array(face["embedding"])
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(vector, recognizer.represent(str(path)), atol=1e-4)
        assert len(face["landmarks"]) == 5 and face["score"] > 0.9


@needs_lfw
def test_several_faces_where_one_is_required(client, keys):
    pair = [np.asarray(Image.open(p).convert("RGB")) for p in DIFFERENT]
    two_people = encoded(np.concatenate(pair, axis=1))
    one = SAME[1].read_bytes()
    detected = client.post("/v1/detect", headers=auth(keys["detect"]), files=files(two_people)).json()
    assert len(detected["images"][0]["faces"]) == 2
    response = client.post("/v1/verify", headers=auth(keys["compare"]), files=files(one, two_people))
    assert "shows 2 faces where one is required" in assert_error(response, 422, "several_faces")["message"]
    data = {"several": "largest"}
    assert client.post("/v1/verify", headers=auth(keys["compare"]), files=files(one, two_people), data=data).is_success


def batch_histogram(client, admin_key: str, name: str) -> dict[str, int]:
    text = client.get("/metrics", headers=auth(admin_key)).text
    return {le: int(n) for le, n in re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\d+)$', text, re.M)}


@needs_lfw
def test_concurrent_requests_share_model_calls(server, keys):
    body = files(*(p.read_bytes() for p in SAME))

    def verify(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.post("/v1/verify", headers=auth(keys["compare"]), files=body).status_code

    with httpx.Client(base_url=server.url) as client:
        before = batch_histogram(client, keys["admin"], "facerec_batch_requests")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(verify, range(16)))
        after = batch_histogram(client, keys["admin"], "facerec_batch_requests")
    assert statuses == [200] * 16
    calls = after["+Inf"] - before.get("+Inf", 0)
    alone = after["1.0"] - before.get("1.0", 0)
    assert 0 < calls < 16 and alone < calls, f"no model call served two requests: {after}"


# ---- the README's examples, run against the server ------------------------------------------
def readme_service_example() -> str:
    text = README.read_text()
    block = text.split("<!-- service-example -->", 1)[1].split("<!-- /service-example -->", 1)[0]
    code = re.search(r"```bash\n(.*?)```", block, re.S)
    assert code, "README.md has no bash block between the service-example markers"
    return code.group(1)


@needs_lfw
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_readme_curl_examples_work(server, keys, tmp_path):
    script = readme_service_example().replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    assert script.count("curl ") == 7
    shutil.copy(SAME[0], tmp_path / "a.jpg")
    shutil.copy(SAME[1], tmp_path / "b.jpg")
    shutil.copy(lfw("George_W_Bush", 3), tmp_path / "c.jpg")
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "KEY": keys["demo"], "ADMIN": keys["admin"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    answers, decoder, rest = [], json.JSONDecoder(), run.stdout.strip()
    while rest:
        answer, end = decoder.raw_decode(rest)
        answers.append(answer)
        rest = rest[end:].strip()
    detect, verify_files, verify_json, gallery, subject, enrolled, search = answers
    assert len(detect["images"][0]["faces"]) == 1
    assert verify_files["same"] is True and verify_json["score"] == pytest.approx(verify_files["score"], abs=1e-6)
    assert gallery["name"] == "staff" and subject["name"] == "alice" and len(enrolled["faces"]) == 2
    assert search["faces"][0]["subject"] == "alice" and search["faces"][0]["known"] is True


# ---- running without keys -------------------------------------------------------------------------
def test_no_auth_is_refused_off_loopback(capsys):
    assert main(["serve", "--insecure-no-auth", "--host", "0.0.0.0"]) == 2
    assert "loopback address only" in capsys.readouterr().err
    from facerec.serve.http import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example")


def test_no_auth_on_loopback_serves_without_a_key(tmp_path):
    server = start_server(tmp_path / "data", "--insecure-no-auth")
    try:
        response = httpx.post(f"{server.url}/v1/detect", files=files(gray()), timeout=60)
        assert response.status_code == 200, response.text
    finally:
        server.stop()
    assert "--insecure-no-auth" in server.log.read_text()


# ---- the batcher on its own ---------------------------------------------------------------------
def run_batcher(embed, rounds: list[list[list[np.ndarray]]], wait_s: float = 0.05) -> tuple[list, list]:
    """Submit each round of jobs at once to one batcher over `embed`, a round after the other;
    (each round's results or errors, the (crops, requests) of every model call)."""
    import asyncio

    from facerec.serve.http.batching import Batcher

    calls: list[tuple[int, int]] = []

    async def scenario() -> list:
        batcher = Batcher(embed, max_batch=4, wait_s=wait_s, observe=lambda n, k: calls.append((n, k)))
        batcher.start()
        try:
            return [
                await asyncio.gather(*(batcher.embed(job) for job in jobs), return_exceptions=True) for jobs in rounds
            ]
        finally:
            await batcher.stop()

    return asyncio.run(scenario()), calls


def test_batcher_answers_each_request_with_its_own_rows():
    jobs = [[np.full(2, float(10 * j + i)) for i in range(n)] for j, n in enumerate([1, 2, 1, 3])]
    (results,), calls = run_batcher(np.stack, [jobs])
    for job, rows in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(rows, np.stack(job))
    assert calls == [(4, 3), (3, 1)]  # at most 4 crops a call: the last job waits for the next one


def test_a_failed_model_call_fails_its_requests_and_the_batcher_goes_on():
    def embed(crops):
        if len(crops) > 1:
            raise RuntimeError("out of memory")
        return np.stack(crops)

    (failed, served), _ = run_batcher(embed, [[[np.zeros(2)], [np.ones(2)]], [[np.ones(2)]]])
    assert all(isinstance(r, RuntimeError) for r in failed)
    np.testing.assert_array_equal(served[0], [[1.0, 1.0]])
