"""Face quality in the service: /v1/detect scores every face with the real scorer (the library's
value for the same crop), and enrolment with min_quality refuses a low-quality face with a
clear 422, enrolling nothing. A real `facerec serve` on loopback (plaintext store, no keys)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from served import assert_error, files, lfw, start_server

from conftest import needs_lfw, needs_mtcnn

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = [needs_mtcnn, needs_lfw]

PHOTO = lfw("Colin_Powell", 1)


def noisy_jpeg(path, sigma: float) -> bytes:
    """The photo with strong Gaussian noise: the face is still found, but worth less."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    pixels += np.random.default_rng(0).normal(0, sigma, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("quality") / "data"
    server = start_server(data_dir, "--insecure-no-auth", "--store-plaintext", "--model", "fast")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
    server.stop()


def detect_quality(client, image: bytes) -> float:
    response = client.post("/v1/detect", files=files(image))
    assert response.status_code == 200, response.text
    (face,) = response.json()["images"][0]["faces"]
    return face["quality"]


def test_detect_quality_is_the_stability_score_of_the_face(client):
    from facerec.data.transforms import to_tensor
    from facerec.eval.quality import Stability
    from facerec.pipeline import RecognitionPipeline

    served = detect_quality(client, PHOTO.read_bytes())
    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", several="largest", device="cpu")
    crop = to_tensor(pipeline.align(PHOTO).crop)[None]
    assert served == pytest.approx(float(Stability()(pipeline, crop)[0]), abs=2e-4)  # answers round to 1e-4
    assert 0 < detect_quality(client, noisy_jpeg(PHOTO, 45)) < served


def test_enrolment_gate_refuses_a_low_quality_face(client):
    clean, noisy = PHOTO.read_bytes(), noisy_jpeg(PHOTO, 45)
    gate = (detect_quality(client, clean) + detect_quality(client, noisy)) / 2
    assert client.post("/v1/galleries", json={"name": "g"}).status_code == 201
    assert client.post("/v1/galleries/g/subjects", json={"name": "powell"}).status_code == 201
    url = "/v1/galleries/g/subjects/powell/faces"
    # all or none: the clean photo is not enrolled either when the noisy one is refused
    error = assert_error(
        client.post(url, files=files(clean, noisy), data={"min_quality": gate}), 422, "quality_too_low"
    )
    assert f"below min_quality {gate:g}" in error["message"] and "images[1]" in error["message"]
    assert "images[0]" not in error["message"]
    assert client.get("/v1/galleries").json()["galleries"][0]["faces"] == 0
    response = client.post(url, files=files(clean), data={"min_quality": gate})
    assert response.status_code == 201, response.text
    (face,) = response.json()["faces"]
    assert face["face"]["quality"] >= gate
    assert_error(client.post(url, files=files(clean), data={"min_quality": "2"}), 422, "invalid_option")
    assert client.get("/v1/galleries").json()["galleries"][0]["faces"] == 1


def test_verify_scores_quality_only_when_asked(client):
    two = files(PHOTO.read_bytes(), lfw("Colin_Powell", 2).read_bytes())
    plain = client.post("/v1/verify", files=two).json()
    assert [face["quality"] for face in plain["faces"]] == [None, None]
    asked = client.post("/v1/verify", files=two, data={"quality": "true"}).json()
    assert all(0 < face["quality"] <= 1 for face in asked["faces"])
    assert asked["score"] == pytest.approx(plain["score"], abs=1e-6)
    assert_error(client.post("/v1/verify", files=two, data={"quality": "maybe"}), 422, "invalid_option")
