"""ONNX files of facerec networks: writing one (torch.onnx, the card in its metadata), running one
(onnxruntime behind an nn.Module) and the cache of networks converted on the fly.

An exported file holds a single graph `faces (N, 3, S, S) in [-1, 1] -> embeddings (N, D)` with a
dynamic batch axis, and in its metadata_props the model card as JSON (`facerec_card`) and the
torch model's content digest (`facerec_digest`). The card keeps that digest, so a gallery filled
through torch accepts embeddings computed through onnxruntime and back: the two agree within
1e-4 (tests/models/test_onnx.py). Only this module touches the optional `onnx` and
`onnxruntime` packages (`pip install 'facerec[onnx]'`).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.core.files import atomic_path
from facerec.errors import FacerecError
from facerec.models.card import ModelCard

log = logging.getLogger(__name__)

CARD_KEY = "facerec_card"
DIGEST_KEY = "facerec_digest"
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "faces", "embeddings"
ONNX_CACHE = Path.home() / ".cache" / "facerec" / "onnx"
INSTALL_HINT = "pip install 'facerec[onnx]'"


def is_onnx_file(spec: str | Path) -> bool:
    return Path(spec).suffix.lower() == ".onnx"


def _require(package: str) -> Any:
    """The optional package `package`, or an error that says how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise FacerecError(f"ONNX support needs the '{package}' package: {INSTALL_HINT}") from exc


# ---- writing ------------------------------------------------------------------------------
def write_onnx(net: nn.Module, card: ModelCard, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """`net` (eval mode, dynamic batch axis) as an ONNX file at `path`, its card in the metadata."""
    require_exportable(net, card)
    onnx = _require("onnx")  # torch.onnx needs it too, to serialize the graph
    graph = onnx.load_from_string(_export_graph(net, card.input_size, opset))
    for key, value in ((CARD_KEY, json.dumps(card.to_json())), (DIGEST_KEY, card.digest)):
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = f"facerec model {card.short_id}: {INPUT_NAME} (N, 3, S, S) in [-1, 1] -> {OUTPUT_NAME}"
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
    return Path(path)


def require_exportable(net: nn.Module, card: ModelCard) -> None:
    """An error for networks that torch cannot trace (dlib's C++ wrapper) or that are ONNX already."""
    if not getattr(net, "exportable", True):
        raise FacerecError(
            f"model '{card.name or card.architecture}' is not a torch network: it cannot be exported to ONNX "
            "nor run on onnxruntime (use the torch runtime)"
        )


def _export_graph(net: nn.Module, input_size: int, opset: int) -> bytes:
    """The serialized graph of `net` traced on its own device, in eval mode (restored after)."""
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    example = torch.zeros(2, 3, input_size, input_size, device=device)
    buffer, was_training = io.BytesIO(), net.training
    net.eval()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is chosen on purpose (the torch.export-based one
            # needs onnxscript); torch announces its deprecation on every call.
            warnings.simplefilter("ignore", DeprecationWarning)
            # Feature-map sizes read in Python (dlib's padded residual sums) are constants of the
            # graph, which is right: its input size is fixed; only the batch axis is dynamic.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                net,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:
        raise FacerecError(f"ONNX export failed (opset {opset}): {exc}") from exc
    finally:
        net.train(was_training)
    return buffer.getvalue()


# ---- reading and running ------------------------------------------------------------------
class OnnxNet(nn.Module):
    """An ONNX embedding network run by onnxruntime, used like a torch backbone: a (N, 3, S, S)
    tensor in, a (N, D) float tensor out, on the input's device. It has no parameters, so
    `.to(device)` moves nothing: the execution provider is chosen when it is made (CUDA when
    `device` is a GPU and onnxruntime has the CUDA provider; else the CPU)."""

    exportable = False  # already ONNX: `facerec export` of its file would be a copy

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = _session(self.path, torch.device(device), threads)
        self.input_name = self.session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        faces = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run(None, {self.input_name: faces})[0]
        return torch.from_numpy(out).to(x.device)

    def extra_repr(self) -> str:
        return f"path={self.path}, providers={self.providers}"


def _session(path: Path, device: torch.device, threads: int | None) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=_providers(ort, device))
    except Exception as exc:
        raise FacerecError(f"onnxruntime cannot load {path}: {exc}") from exc


def _providers(ort: Any, device: torch.device) -> list[Any]:
    """onnxruntime's CUDA provider for a GPU device when it has one (it falls back to the CPU
    for any operator CUDA lacks); the CPU otherwise."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        log.warning("this onnxruntime has no CUDA provider (install onnxruntime-gpu): running on the CPU")
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def read_onnx(
    path: str | Path, device: str | torch.device = "cpu", threads: int | None = None
) -> tuple[OnnxNet, ModelCard]:
    """The network of an exported ONNX file and the card stored in it."""
    path = Path(path)
    if not path.is_file():
        raise FacerecError(f"model file not found: {path}")
    net = OnnxNet(path, device, threads)
    stored = net.session.get_modelmeta().custom_metadata_map
    if CARD_KEY not in stored:
        raise FacerecError(f"{path} has no facerec model card in its metadata: export it with `facerec export`")
    try:
        card = ModelCard.from_json(json.loads(stored[CARD_KEY]))
    except json.JSONDecodeError as exc:
        raise FacerecError(f"unreadable model card in {path}: {exc}") from exc
    return net, card


# ---- torch models on onnxruntime ----------------------------------------------------------
def cached_onnx_file(
    net: nn.Module, card: ModelCard, cache_dir: Path | None = None, opset: int = DEFAULT_OPSET
) -> Path:
    """The ONNX file of a torch model, exported once into the cache (keyed by the card's content
    digest and the opset) and reused after."""
    require_exportable(net, card)
    if not card.digest:
        raise FacerecError("a model without a content digest cannot be cached as ONNX: export it with `facerec export`")
    path = (cache_dir or ONNX_CACHE) / f"{card.digest}-opset{opset}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once): %s", card.short_id, path)
        write_onnx(net, card, path, opset)
    return path
