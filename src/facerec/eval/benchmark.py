"""One benchmark table: every protocol of a list run on one model, with and without flip, written
as Markdown and JSON.

The list is the one training runs periodically (`train.eval`: `ProtocolConfig` entries, each a
registered protocol with its options, the detector that finds the faces and an optional
degradation), so `facerec benchmark MODEL --protocols run.yaml` scores a finished model on exactly
what its training watched.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from facerec.config import ProtocolConfig, build_typed
from facerec.core.files import write_json, write_text
from facerec.errors import ConfigError
from facerec.eval.protocols import EvaluationProtocol, build_protocol
from facerec.pipeline import RecognitionPipeline

# (detector, degrade, flip) -> the pipeline that runs an entry
PipelineSource = Callable[[str, int, bool], RecognitionPipeline]

# The table's columns, in this order, where some protocol reports them (summary keys).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("auc", "AUC"),
    ("eer", "EER"),
    ("tar_at_far_0.01", "TAR@FAR 1e-2"),
    ("tar_at_far_0.001", "TAR@FAR 1e-3"),
    ("tar_at_far_0.0001", "TAR@FAR 1e-4"),
    ("tar_at_far_1e-05", "TAR@FAR 1e-5"),
    ("tar_at_far_1e-06", "TAR@FAR 1e-6"),
    ("rank1", "rank-1"),
    ("rank5", "rank-5"),
    ("tpir_at_fpir_0.1", "TPIR@FPIR 1e-1"),
    ("tpir_at_fpir_0.01", "TPIR@FPIR 1e-2"),
)
PERCENT = {"accuracy", "eer", "rank1", "rank5"} | {key for key, _ in COLUMNS if key.startswith(("tar_", "tpir_"))}


@dataclass
class BenchmarkRow:
    """The headline numbers of one protocol seen through one pipeline variant."""

    protocol: str  # the protocol's own name (lfw, the CSV's stem ...)
    entry: int  # index of the list entry it came from
    detector: str
    degrade: int
    flip: bool
    summary: dict[str, float]

    @property
    def label(self) -> str:
        degraded = f", {self.degrade} px" if self.degrade else ""
        return f"{self.protocol} ({self.detector}{degraded})"


@dataclass
class Benchmark:
    model: str
    model_digest: str
    rows: list[BenchmarkRow] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)  # each entry's full protocol report

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_digest": self.model_digest,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_description(),
            "rows": [{**row.__dict__, "label": row.label} for row in self.rows],
            "reports": self.reports,
        }


def read_protocol_list(path: str | Path) -> list[ProtocolConfig]:
    """The entries of a benchmark list file: a YAML/JSON list of protocol entries, a mapping with
    `protocols:`, or a training config (its `train.eval`)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the protocol list {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, dict):
        data = data.get("protocols", (data.get("train") or {}).get("eval"))
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: expected a non-empty list of protocols (or `protocols:` / `train.eval:`)")
    return [build_typed(ProtocolConfig, entry, f"protocols[{i}]") for i, entry in enumerate(data)]


def run_benchmark(
    entries: Sequence[ProtocolConfig],
    pipelines: PipelineSource,
    flips: Sequence[bool] = (False, True),
    out_dir: str | Path | None = None,
    progress: bool = False,
    protocols: Sequence[EvaluationProtocol] | None = None,
) -> Benchmark:
    """Run every entry; a protocol that scores both flip settings in one pass (its report has
    `summary_by_flip`) runs once, any other once per flip setting. `protocols`: the entries
    already built (`build_protocols`)."""
    if not entries:
        raise ConfigError("a benchmark needs at least one protocol")
    protocols = protocols if protocols is not None else build_protocols(entries)
    first = pipelines(entries[0].detector, entries[0].degrade, True)
    bench = Benchmark(first.model.name, first.model.digest)
    for index, (entry, protocol) in enumerate(zip(entries, protocols, strict=True)):
        for run, flip in enumerate(_flip_runs(flips)):
            pipeline = pipelines(entry.detector, entry.degrade, flip)
            folder = f"{index:02d}_{protocol.name}" + ("" if run == 0 else "_no_flip")
            out = Path(out_dir) / folder if out_dir is not None else None
            report = protocol.evaluate(pipeline, out, progress=progress)
            bench.reports.append({"entry": index, **_compact(report)})
            for row_flip, summary in summaries(report, flip).items():
                if row_flip in flips:
                    row = BenchmarkRow(protocol.name, index, entry.detector, entry.degrade, row_flip, summary)
                    bench.rows.append(row)
            if "summary_by_flip" in report:
                break
    if out_dir is not None:
        write_benchmark(bench, Path(out_dir))
    return bench


def build_protocols(entries: Sequence[ProtocolConfig]) -> list[EvaluationProtocol]:
    """Each entry's protocol (its data read and checked now, before any model runs)."""
    return [build_protocol(entry.name, entry.options) for entry in entries]


def _flip_runs(flips: Sequence[bool]) -> list[bool]:
    # flip first: a protocol reporting both settings from one pass needs the flip-summed pipeline
    return sorted(set(flips), reverse=True)


def summaries(report: dict[str, Any], flip: bool) -> dict[bool, dict[str, float]]:
    """The report's summary per flip setting."""
    by_flip = report.get("summary_by_flip")
    if by_flip:
        return {key == "flip": summary for key, summary in by_flip.items()}
    return {flip: report["summary"]}


def _compact(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its per-pair arrays (the protocol's own report.json keeps them)."""
    drop = {"fold_accuracies", "fold_thresholds"}

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in drop}
        return value

    return strip(report)


def write_benchmark(bench: Benchmark, out: Path) -> tuple[Path, Path]:
    """benchmark.md (the table) and benchmark.json (rows, reports, machine) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "benchmark.md", out / "benchmark.json"
    write_text(md, markdown_table(bench))
    write_json(js, bench.to_json())
    return md, js


def markdown_table(bench: Benchmark) -> str:
    """One line per protocol and flip setting; a column only where some protocol reports it."""
    columns = [(key, title) for key, title in COLUMNS if any(key in row.summary for row in bench.rows)]
    head = ["protocol", "flip", *(title for _, title in columns)]
    lines = [
        f"Benchmark of `{bench.model}` (digest {bench.model_digest[:12] or 'none'}); {machine_description()}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in bench.rows:
        cells = [row.label, "yes" if row.flip else "no"]
        cells += [_cell(key, row.summary) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "- : not reported by that protocol, or too few impostor pairs to measure that FAR.", ""]
    return "\n".join(lines)


def _cell(key: str, summary: dict[str, float]) -> str:
    if key not in summary:
        return "-"
    value = summary[key]
    if key == "accuracy" and "accuracy_std" in summary:
        return f"{100 * value:.2f}% +- {100 * summary['accuracy_std']:.2f}"
    return f"{100 * value:.2f}%" if key in PERCENT else f"{value:.4f}"


def machine_description() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return f"{device}, torch {torch.__version__}, {platform.machine()}"


def pipeline_source(model: str | Path, runtime: str | None = None, **options: Any) -> PipelineSource:
    """Pipelines over one loaded model, one per (detector, degrade, flip), made on first use."""
    cache: dict[tuple[str, int, bool], RecognitionPipeline] = {}
    base: list[RecognitionPipeline] = []

    def get(detector: str, degrade: int, flip: bool) -> RecognitionPipeline:
        key = (detector, degrade, flip)
        if key not in cache:
            if not base:
                base.append(RecognitionPipeline.load(model, runtime, detector=detector, **options))
            cache[key] = RecognitionPipeline(
                base[0].model,
                detector,
                several="central",
                missing="center",
                degrade=degrade,
                flip=flip,
                device=base[0].device,
                batch_size=base[0].batch_size,
            )
        return cache[key]

    return get


@dataclass
class BenchmarkSets:
    """The data sets named on the command line, turned into list entries."""

    lfw: str | None = None
    lfw_folds: list[int] | None = None
    pairs: list[str] = field(default_factory=list)
    bins: list[str] = field(default_factory=list)
    identify: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # IJB-layout folders (IJB-C file names)

    def entries(self, detector: str, degrades: Sequence[int] = (0,)) -> list[ProtocolConfig]:
        """One entry per set and degradation; `.bin` files hold aligned crops (detector none)."""
        named: list[tuple[str, dict[str, Any], str]] = []
        if self.lfw:
            named.append(("lfw", {"root": self.lfw, "folds": self.lfw_folds}, detector))
        named += [("pairs", {"csv": csv}, detector) for csv in self.pairs]
        named += [("bin", {"file": file}, "none") for file in self.bins]
        named += [("identify", {"root": root}, detector) for root in self.identify]
        named += [("templates", {"root": root}, detector) for root in self.templates]
        return [ProtocolConfig(name, options, det, degrade) for degrade in degrades for name, options, det in named]
