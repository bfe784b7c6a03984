"""The one typed configuration of a training run.

A config is a tree of dataclasses. YAML files and `--set a.b=value` overrides are merged
into it strictly: unknown keys and values of the wrong type are errors that name the key.
Component options (backbone, head, loss parameters) are free-form dicts checked against the
registered constructor's signature when the component is built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from facerec.errors import ConfigError
from facerec.registry import suggest

BUNDLED_DIR = Path(__file__).parent / "configs"


@dataclass
class SyntheticConfig:
    identities: int = 400
    images_per_identity: int = 12
    seed: int = 0
    difficulty: float = 1.0


@dataclass
class Pose3DConfig:
    """3-D-aided pose augmentation (facerec.data.pose_augment): a generic 3-D head fitted to each
    image's landmarks turns the face further away from the camera, as in Xing et al. 2020.
    With distillation, precomputed targets (distill.targets) stay the teacher's embedding of the
    ORIGINAL image while the student sees the turned one (pose-invariant distillation); an
    on-the-fly teacher would see the turned face, so the two are not combined."""

    probability: float = 0.0  # chance an eligible image is turned; 0: off; below 0.5 as in the paper
    yaw: tuple[float, float] = (15.0, 45.0)  # extra yaw range (degrees), always away from the camera
    pitch: float = 5.0  # largest extra pitch, either way (degrees)
    max_yaw: float = 75.0  # |yaw| after turning never exceeds this: the generic head has no back
    frontal: float = 5.0  # faces with |yaw| below this are near-frontal and turn either way
    light: float = 0.0  # chance that a turned face also gets an extra light source
    light_strength: float = 0.5  # largest strength of that light (1: the face lit by it alone)
    entropy_below: float = 1.0  # only identities whose yaw-histogram entropy (nats) is below this
    bin_width: float = 15.0  # degrees per bin of that histogram
    # pose.tsv file(s) with each image's yaw and five landmarks (`facerec data pose TREE`);
    # None: the pose.tsv at the root of the images' tree
    poses: str | list[str] | None = None


@dataclass
class AugmentConfig:
    flip: bool = True
    lowres_prob: float = 0.0
    lowres_min_size: int = 16  # degraded faces get a random size in [min, max] pixels, then scaled back
    lowres_max_size: int = 0  # 0: the image size
    color_jitter: float = 0.0
    # a random similarity about the crop center: alignment noise the detector's landmarks make
    shift: float = 0.0  # largest translation, as a fraction of the crop size
    rotate: float = 0.0  # largest rotation, degrees
    scale: float = 0.0  # largest relative change of scale
    pose3d: Pose3DConfig = field(default_factory=Pose3DConfig)  # turned before the rest, on the stored crop


@dataclass
class DataConfig:
    source: str = "synthetic"  # synthetic | folder | list
    root: str | None = None  # identity-folder root, or base directory of a list file
    list_file: str | None = None
    # identity-folder trees added to the training images only, after the held-out identities
    # are chosen (e.g. `facerec morphs` for distillation); their identities follow root's
    extra_roots: list[str] = field(default_factory=list)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_identities: int = 0  # identities held out (by identity) for verification
    # seed of that choice; None: train.seed. Set it to keep the same held-out people across training seeds
    val_seed: int | None = None
    min_images_per_identity: int = 1
    batch_size: int = 64
    sampler: str = "random"  # random | pk
    images_per_identity_in_batch: int = 4  # K of a PK batch
    num_workers: int = 0
    # where the augmentation (all but pose3d) runs: `loader`, per image in the loader workers, or
    # `device`, on each batch where the network trains (facerec.data.batch_augment): the workers
    # then only decode, which keeps them off a GPU's critical path
    augment_on: str = "loader"
    # decode every training image once, at the input size, into memory the loader workers share
    # (input_size^2 * 3 bytes an image: 12 KB at 64 px, 37 KB at 112 px); shared where workers
    # are forked (Linux); each process of a multi-process run keeps its own copy
    preload: bool = False


@dataclass
class BackboneConfig:
    name: str = "iresnet50"
    embedding_size: int = 512
    input_size: int = 112  # side of the square aligned crop the network takes (and the data is resized to)
    # where the five landmarks sit in that crop: 'arcface' (insightface's template) or 'dlib' (dlib's
    # tighter chip); training crops stored on the ArcFace template are warped to it
    template: str = "arcface"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    """A head: what turns embeddings (and identity labels) into a training loss, e.g. a margin
    classifier, Partial FC, a triplet or center loss (registry `facerec.heads.HEADS`)."""

    name: str = "arcface"
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassStorageConfig:
    """Storage of Partial FC's class rows (`head.options.storage`): centers (and momentum) in
    fp32, bf16 or fp16, in memory or in a memory-mapped file per rank under `directory`;
    arithmetic on the sampled rows is fp32 either way (`facerec.heads.class_store`)."""

    dtype: str = "fp32"  # fp32 | bf16 | fp16
    momentum: bool = True  # false: the class layer takes plain SGD steps and keeps no momentum rows
    rounding: str = "stochastic"  # nearest | stochastic: how fp32 results are written back to bf16/fp16
    backend: str = "memory"  # memory | mmap
    directory: str | None = None  # where the mmap backend keeps its files (scratch, rewritten at start)


def class_storage_config(data: dict[str, Any] | None, where: str = "head.options.storage") -> ClassStorageConfig:
    """The typed storage options of a Partial FC head; unknown keys are errors naming the key."""
    return _build(ClassStorageConfig, {} if data is None else data, where)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    head_lr_scale: float = 1.0


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | poly | constant | step
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    power: float = 2.0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1


@dataclass
class ProtocolConfig:
    """An evaluation protocol run during training (registry `facerec.eval.protocols.PROTOCOLS`:
    lfw, pairs, bin, identify), e.g. {name: lfw, options: {root: ../shared/data/lfw, folds: [9]}}."""

    name: str = "lfw"
    options: dict[str, Any] = field(default_factory=dict)
    detector: str = "none"  # how the model sees its images: none (aligned crops), mtcnn, dlib
    degrade: int = 0  # > 0: faces degraded to N px across on the 112 template (low-resolution scoring)


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int = 0  # 0: epochs decide
    stop_after: int = 0  # stop this invocation after N steps (the schedule still spans the whole run)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16
    grad_clip: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 20
    eval_every: int = 0  # steps; 0: only at the end
    eval: list[ProtocolConfig] = field(default_factory=list)  # protocols run with the held-out check
    output_dir: str = "runs/default"
    init_from: str | None = None  # checkpoint or model file (or "fast") whose weights start this run
    init_head: bool = True
    freeze: list[str] = field(default_factory=list)  # parameter-name patterns
    unfreeze: list[str] = field(default_factory=list)  # exceptions to `freeze`
    max_bad_steps: int = 10
    threads: int = 0  # torch CPU threads; 0: torch default
    progress: bool = True


@dataclass
class DistillConfig:
    """Distillation from teacher embeddings: precomputed (`facerec distill-targets`, any teacher
    including the dlib reference model) or computed on the fly by a facerec model."""

    # .npz of teacher embeddings by image path (a list: several, e.g. one per tree); None: no distillation
    targets: str | list[str] | None = None
    # or a facerec model.pt / checkpoint that embeds each augmented batch (resized to its input)
    teacher: str | None = None
    terms: dict[str, float] = field(default_factory=lambda: {"cosine": 1.0})  # term -> weight
    flip: bool = True  # use the teacher's flip-augmented embeddings
    # subtract the teacher's mean embedding over the training images and renormalize: spreads
    # targets that sit in a narrow cone (the dlib model's) over the sphere for the student
    center: bool = False
    # the teacher's verification threshold (the 'evaluation' term); None: measured on the targets
    threshold: float | None = None
    width: float = 0.1  # width of the 'evaluation' term's weighting around the threshold
    # > 0: before the first step, refit the backbone's output layer by least squares so that its
    # embeddings of this many training images map onto the teacher's (facerec.distill.refit)
    fit_output: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    aux_heads: list[HeadConfig] = field(default_factory=list)  # more heads, weighted, beside `head`
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


# Keys renamed since configs were first written: stored configs (checkpoints, model files) are
# read through them; a user's file with an old key gets an error that names the new one.
RENAMED = {"model": "backbone", "aux_losses": "aux_heads", "data.image_size": "backbone.input_size"}


def from_dict(data: dict[str, Any], stored: bool = False) -> Config:
    """The typed config of a plain dict; `stored`: a config saved by an older version, whose
    renamed keys are carried over instead of refused."""
    return _build(Config, upgrade_stored(data) if stored else data, "")


def upgrade_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved config dict with the keys of RENAMED moved to their new names."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    if "model" in data:
        data["backbone"] = {**data.pop("model"), **data.get("backbone", {})}
    if "aux_losses" in data:
        data["aux_heads"] = data.pop("aux_losses")
    if isinstance(data.get("data"), dict) and "image_size" in data["data"]:
        data.setdefault("backbone", {})["input_size"] = data["data"].pop("image_size")
    return data


def build_typed(cls: type, data: Any, where: str = "") -> Any:
    """An instance of the config dataclass `cls` from a plain mapping, keys and types checked as
    for a whole config (`where`: the key path errors name)."""
    return _build(cls, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"'{where or 'config'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names and path in RENAMED:
            raise ConfigError(f"config key '{path}' is now '{RENAMED[path]}': rename it in your config")
        if key not in names:
            raise ConfigError(
                f"unknown config key '{path}'. Valid keys here: {', '.join(names)}." + suggest(key, names)
            )
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise ConfigError(f"'{path}' must be a list of {len(items)} values, got {value!r}")
        return tuple(_coerce(t, v, path) for t, v in zip(items, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"'{path}' must be true or false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"'{path}' must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"'{path}' must be of type {tp.__name__}, got {value!r}")
    return value


def list_bundled() -> dict[str, str]:
    """The bundled configs: {name: the first line of its file, a comment that says what it is}."""
    return {path.stem: _first_line(path).lstrip("# ") for path in sorted(BUNDLED_DIR.glob("*.yaml"))}


def _first_line(path: Path) -> str:
    lines = path.read_text().splitlines()
    return lines[0] if lines else ""


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a bundled config (e.g. 'quickstart')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    names = list(list_bundled())
    raise ConfigError(
        f"config '{name_or_path}' is neither a file nor a bundled config "
        f"({', '.join(names)})." + suggest(name_or_path, names)
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a section")
        node[parts[-1]] = value
    return data


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    data: dict[str, Any] = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        data = loaded or {}
    return from_dict(apply_overrides(data, overrides or []))
