"""ONNX export of a recognition model and loading it back (`facerec export MODEL --format onnx`).

    export_onnx("default", "default.onnx")           # a named model, model file or checkpoint
    model = load_onnx_model("default.onnx")          # RecognitionModel: OnnxNet + the stored card
    RecognitionPipeline(model, detector="mtcnn")     # embeds through onnxruntime

`load_recognition_model(spec, runtime="onnx")` does the same for any torch model through a
cached export; the file format is described in `facerec.models.onnx_file`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from facerec.errors import FacerecError
from facerec.models.io import RecognitionModel, load_recognition_model
from facerec.models.onnx_file import DEFAULT_OPSET, OnnxNet, is_onnx_file, read_onnx, write_onnx

__all__ = ["DEFAULT_OPSET", "OnnxNet", "export_onnx", "load_onnx_model", "onnx_difference", "torch_model_for_export"]


def export_onnx(spec_or_model: str | Path | RecognitionModel, out_path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX file of a torch model (a name, a model file, a checkpoint or a loaded
    RecognitionModel), with a dynamic batch axis and the model's card in its metadata."""
    model = torch_model_for_export(spec_or_model)
    out_path = Path(out_path)
    if not is_onnx_file(out_path):
        raise FacerecError(f"an ONNX file's name ends in .onnx, not '{out_path.name}'")
    return write_onnx(model.net, model.card, out_path, opset)


def load_onnx_model(
    path: str | Path, device: str | torch.device = "cpu", threads: int | None = None
) -> RecognitionModel:
    """An exported ONNX file as a RecognitionModel run by onnxruntime, with the card stored in it."""
    if not is_onnx_file(path):
        raise FacerecError(f"not an ONNX file (no .onnx suffix): {path}")
    return RecognitionModel(*read_onnx(path, device, threads))


@torch.no_grad()
def onnx_difference(model: RecognitionModel, path: str | Path, batch: int = 4, seed: int = 0) -> float:
    """The largest absolute difference between the torch model's and the ONNX file's embeddings
    of `batch` random crops: a check that the export computes the same function."""
    onnx_net = OnnxNet(path)
    size = model.input_size
    crops = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    device = next((p.device for p in model.net.parameters()), torch.device("cpu"))
    expected = model.net.eval()(crops.to(device)).float().cpu()
    return float((onnx_net(crops) - expected).abs().max())


def torch_model_for_export(spec_or_model: str | Path | RecognitionModel) -> RecognitionModel:
    """The torch model to export, on the CPU: an ONNX file is refused (it is exported already)."""
    if isinstance(spec_or_model, RecognitionModel):
        return spec_or_model
    if is_onnx_file(spec_or_model):
        raise FacerecError(f"{spec_or_model} is already an ONNX model")
    return load_recognition_model(spec_or_model, "cpu", runtime="torch")
