"""The analyses end to end on a dataset: choose the images, embed them (cached), run the
statistics, write report.json and the plots. Used by `facerec analyze ...`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis import bias, debias, linear_map, membership, projection, resolution
from facerec.analysis.common import ImageSet, embed, folder_images, lfw_images, lfw_pairs_over
from facerec.core.files import write_json
from facerec.core.images import require_folder
from facerec.errors import DataError
from facerec.models.card import backbone_config_of, card_for_backbone
from facerec.models.io import load_recognition_model, write_model_file
from facerec.models.registry import BACKBONES

DEFAULT_CACHE = Path.home() / ".cache" / "facerec" / "embeddings"


@dataclass
class Source:
    """Where the images come from and how a model sees them."""

    lfw: Path | None = None  # LFW root (images/ + meta/)
    images: Path | None = None  # or an identity-folder tree
    folds: list[int] | None = None  # LFW View 2 folds to use
    cache: Path | None = DEFAULT_CACHE
    reuse: dict[str, list[Path]] = field(default_factory=dict)  # model -> its embeddings .npz files
    device: str = "auto"

    def image_set(self) -> ImageSet:
        if self.lfw is not None:
            return lfw_images(self.lfw, self.folds)
        if self.images is not None:
            return folder_images(self.images)
        raise DataError("give --lfw ROOT or --images TREE")

    def embed(self, images: ImageSet, model: str, detector: str, **kwargs: Any) -> np.ndarray:
        return embed(images, model, detector, self.cache, reuse=self.reuse, device=self.device, **kwargs)


def _finish(report: dict[str, Any], out: Path, name: str = "report.json") -> dict[str, Any]:
    report["command"] = "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None
    write_json(out / name, report)
    return report


def short_name(model: str) -> str:
    """'dlib', or the run folder and file name of a model file, for plot titles."""
    path = Path(model)
    return model if not path.suffix else f"{path.parent.name}/{path.name}"


def group_table(groups: str, lfw: Path | None) -> dict[str, str]:
    """'gender' / 'race' (LFW's label lists) or a CSV file of key,group rows."""
    if groups in ("gender", "race"):
        if lfw is None:
            raise DataError(f"--groups {groups} uses LFW's label lists: give --lfw, or a CSV of labels")
        return bias.lfw_gender(lfw / "meta") if groups == "gender" else bias.lfw_race(lfw / "meta")
    return bias.read_group_csv(groups)


def bias_study(
    source: Source, model: str, detector: str, groups: str, out: Path, target_fmr: float, **options: Any
) -> dict[str, Any]:
    images = source.image_set()
    labels = bias.groups_of(images.paths, images.identities, group_table(groups, source.lfw))
    emb = source.embed(images, model, detector)
    title = f"{short_name(model)}, {Path(groups).stem}:"
    report = bias.analyze(emb, images.identities, labels, out, target_fmr, title=title, **options)
    report.update(model=model, detector=detector, grouping=groups, unlabelled_images=int((labels == "").sum()))
    return _finish(report, out)


def debias_study(
    source: Source, model: str, detector: str, groups: str, out: Path, components: int | None = None
) -> dict[str, Any]:
    """Fit the directions between `groups` on the source's faces and write `model` without them
    (a model file at `out`, its report beside it as .json)."""
    original = load_recognition_model(model, "cpu", runtime="torch")
    card = original.card
    if card.architecture not in BACKBONES.names():
        raise DataError(f"{model} is not a facerec network ({card.architecture}): nothing to fold into")
    debias.output_layers(original.net)  # before the minutes of embedding: can the projection go in?
    images = source.image_set()
    labels = bias.groups_of(images.paths, images.identities, group_table(groups, source.lfw))
    fitted = debias.group_directions(source.embed(images, model, detector), labels, components)
    net = debias.fold_projection(original.net, fitted.projection(), card.input_size)
    k = len(fitted.directions)
    notes = (
        f"{card.short_id} with the {k} directions between the groups of {groups} projected out (fitted on "
        f"{len(images.paths)} faces of {source.images or source.lfw}, detector {detector}); its thresholds no "
        "longer hold: measure one with `facerec calibrate`. Folded for inference: training from it "
        "(train.init_from) re-estimates the last batch norm and loses the projection"
    )
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    new_card = card_for_backbone(backbone_config_of(card), state, name=out.stem, notes=notes)
    write_model_file(out, new_card, state)
    report = {
        "model": model,
        "model_digest": card.digest,
        "written": str(out),
        "written_digest": new_card.digest,
        "groups": groups,
        "group_sizes": fitted.group_sizes,
        "unlabelled_images": int((labels == "").sum()),
        "directions": k,
        "variance_share": fitted.variance_share.round(4).tolist(),
        "direction_vectors": fitted.directions.tolist(),  # the rows D of the projection I - D^T D
        "detector": detector,
    }
    return _finish(report, out.parent, f"{out.stem}.json")


def split_lfw_folds(source: Source, eval_folds: list[int], fit_folds: list[int]) -> tuple[ImageSet, Any, np.ndarray]:
    """All images of both fold sets, the evaluation pairs over them, and the fit images."""
    if source.lfw is None:
        raise DataError("this analysis runs on LFW View 2 folds: give --lfw ROOT")
    if set(eval_folds) & set(fit_folds):
        raise DataError(f"evaluation folds {eval_folds} and fitting folds {fit_folds} overlap")
    images = lfw_images(source.lfw, sorted(eval_folds + fit_folds))
    pairs = lfw_pairs_over(images, source.lfw, eval_folds)
    fit = np.flatnonzero(np.isin(images.folds, fit_folds))
    return images, pairs, fit


def linear_map_study(
    source: Source,
    model_a: str,
    detector_a: str,
    model_b: str,
    detector_b: str,
    eval_folds: list[int],
    fit_folds: list[int],
    sizes: tuple[int, ...],
    out: Path,
) -> dict[str, Any]:
    images, pairs, pool = split_lfw_folds(source, eval_folds, fit_folds)
    a = source.embed(images, model_a, detector_a)
    b = source.embed(images, model_b, detector_b)
    report = linear_map.experiment(a, b, images.identities, pool, pairs, sizes)
    report.update(model_a=model_a, model_b=model_b, eval_folds=eval_folds, fit_folds=fit_folds)
    out.mkdir(parents=True, exist_ok=True)
    linear_map.plot(report, out / "linear_map.png", f"{short_name(model_a)} -> {short_name(model_b)}:")
    return _finish(report, out)


def resolution_study(
    source: Source, model: str, detector: str, size: int, eval_folds: list[int], fit_folds: list[int], out: Path
) -> dict[str, Any]:
    images, pairs, fit = split_lfw_folds(source, eval_folds, fit_folds)
    hr = source.embed(images, model, detector)
    lr = source.embed(images, model, detector, degrade=size)  # degraded on the 112 template
    report = resolution.analyze(hr, lr, pairs, fit, out, size, title=short_name(model))
    report.update(model=model, detector=detector, eval_folds=eval_folds, fit_folds=fit_folds)
    return _finish(report, out)


def membership_study(
    source: Source,
    model: str,
    detector: str,
    members_from: Path,
    out: Path,
    controls: list[tuple[str, str]],
    attack_model: str | None = None,
    attack_detector: str = "mtcnn",
) -> dict[str, Any]:
    """`members_from`: the training tree of `model` (its identity folders are the members);
    the images analyzed are `source`'s. Controls: other models (e.g. the reference) that saw
    none of these people, whose AUC should be near 0.5."""
    # the members are the folder names: the images the model trained on need not be here
    root = require_folder(members_from, "--members-from folder (the model's training tree)")
    members = {p.name for p in root.iterdir() if p.is_dir()}
    if not members:
        raise DataError(f"{members_from} holds no identity folders")
    images = source.image_set()
    results = {}
    for name, det in [(model, detector), *controls]:
        emb = source.embed(images, name, det)
        results[name] = membership.attack(emb, images.identities, members)
    out.mkdir(parents=True, exist_ok=True)
    titled = {short_name(k): v for k, v in results.items()}
    membership.plot(titled, out / "membership.png", "intra-identity compactness, members vs non-members")
    report: dict[str, Any] = {
        "model": model,
        "images": len(images),
        "results": {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in results.items()},
    }
    if attack_model is not None:
        a = source.embed(images, model, detector)
        b = source.embed(images, attack_model, attack_detector)
        is_member = np.isin(images.identities, list(members))
        report["mapping_attack"] = linear_map.mapping_attack(
            a, b, images.identities, np.flatnonzero(is_member), np.flatnonzero(~is_member)
        )
        report["mapping_attack"].update(model_a=model, model_b=attack_model)
    return _finish(report, out)


def embeddings_study(
    source: Source,
    model: str,
    detector: str,
    out: Path,
    method: str,
    dims: int,
    top: int,
    groups: str | None,
) -> dict[str, Any]:
    images = source.image_set()
    keep = projection.top_identities(images.identities, top)
    images = images.subset(keep)
    emb = source.embed(images, model, detector)
    color = images.identities
    if groups:
        color = bias.groups_of(images.paths, images.identities, group_table(groups, source.lfw))
        color = np.where(color == "", "unlabelled", color)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{method}_{dims}d{'_' + Path(groups).stem if groups else ''}.png"
    info = projection.plot(emb, np.asarray(color), out / name, method, dims, f"{short_name(model)}:")
    return _finish({"model": model, "identities": top, "plot": name, **info}, out, Path(name).with_suffix(".json").name)
