"""POST /v1/explain, tested as a client sees it: a real `facerec serve` process on loopback with
real keys and real LFW faces."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from served import assert_error, auth, files, lfw, start_server

from conftest import needs_lfw, needs_mtcnn
from facerec.serve.keys import KeyStore

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = [needs_mtcnn, needs_lfw]  # the server detects faces with MTCNN; real faces to explain


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("explain") / "data"
    store = KeyStore(data_dir)
    roles = {"detect": {"detect"}, "compare": {"detect", "embed"}}
    return data_dir, {role: store.create(frozenset(scopes), (), role)[1] for role, scopes in roles.items()}


@pytest.fixture(scope="module")
def client(keys):
    server = start_server(keys[0], "--model", "fast")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
    server.stop()


def pair(first: int = 1, second: int = 2, name: str = "Aaron_Peirsol") -> list:
    return files(lfw(name, first).read_bytes(), lfw(name, second).read_bytes())


def gray() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((160, 160, 3), 128, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_explain_answers_the_verify_score_with_both_maps_and_an_overlay(client, keys):
    headers = auth(keys[1]["compare"])
    verified = client.post("/v1/verify", headers=headers, files=pair())
    assert verified.status_code == 200, verified.text
    form = {"method": "both", "patch": "16", "stride": "16", "steps": "8"}
    response = client.post("/v1/explain", headers=headers, files=pair(), data=form)
    assert response.status_code == 200, response.text
    answer = response.json()
    # the same faces through the same pipeline: the explained score is the one verify gives
    assert answer["score"] == pytest.approx(verified.json()["score"], abs=1e-5)
    assert answer["same"] is True and answer["threshold"] == pytest.approx(verified.json()["threshold"])
    assert answer["options"] == {"methods": ["occlusion", "gradient"], "patch": 16, "stride": 16, "steps": 8, "top": 5}
    for side in ("a", "b"):
        occlusion = answer["maps"][side]["occlusion"]
        assert occlusion["patches"] == 16  # a 4 x 4 grid over the 64 px crop
        means = [region["mean"] for region in occlusion["top_regions"]]
        assert means == sorted(means, reverse=True) and means[0] > 0  # hiding the best region costs similarity
        gradient = answer["maps"][side]["gradient"]
        # integrated gradients are complete: the map sums to the score's change from a grey face
        # (up to the error of an 8-step path integral)
        change = gradient["score_change_from_grey"]
        assert abs(gradient["sum"] - change) < 0.25 * abs(change)
    assert [f["box"] for f in answer["faces"]] == [f["box"] for f in verified.json()["faces"]]
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"])))
    assert overlay.format == "PNG" and overlay.width > 300
    assert '"embedding":' not in response.text


def test_explain_takes_base64_json_and_defaults_to_occlusion(client, keys):
    images = [base64.b64encode(lfw("Aaron_Peirsol", n).read_bytes()).decode() for n in (1, 2)]
    response = client.post("/v1/explain", headers=auth(keys[1]["compare"]), json={"images": images, "stride": 16})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["options"]["methods"] == ["occlusion"] and set(answer["maps"]["a"]) == {"occlusion"}
    assert answer["options"]["patch"] == 16 and answer["options"]["stride"] == 16


def test_explain_needs_the_embed_scope(client, keys):
    response = client.post("/v1/explain", headers=auth(keys[1]["detect"]), files=pair())
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"method": "saliency"}, "invalid_option"),
        ({"patch": "sixteen"}, "invalid_option"),
        ({"patch": "16", "stride": "1"}, "invalid_option"),  # 49 x 49 patches: over the cap
        ({"method": "gradient", "steps": "1000"}, "invalid_option"),
        ({"method": "gradient", "steps": "0"}, "invalid_request"),
        ({"patch": "0"}, "invalid_request"),
        ({"patch": "8", "stride": "9"}, "invalid_request"),
    ],
)
def test_bad_explain_options_are_422(client, keys, form, code):
    response = client.post("/v1/explain", headers=auth(keys[1]["compare"]), files=pair(), data=form)
    assert_error(response, 422, code)


def test_explain_needs_two_images_with_a_face_each(client, keys):
    headers = auth(keys[1]["compare"])
    one = files(lfw("Aaron_Peirsol", 1).read_bytes())
    assert_error(client.post("/v1/explain", headers=headers, files=one), 422, "wrong_image_count")
    no_face = files(lfw("Aaron_Peirsol", 1).read_bytes(), gray())
    error = assert_error(client.post("/v1/explain", headers=headers, files=no_face), 422, "no_face")
    assert "images[1]" in error["message"]
