"""`facerec benchmark MODEL`: every protocol it is given, one table (Markdown + JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.pipeline_options import add_runtime_argument
from facerec.cli.registry import command
from facerec.errors import ConfigError
from facerec.eval.benchmark import BenchmarkSets, markdown_table, pipeline_source, read_protocol_list, run_benchmark


def run_benchmark_command(args: argparse.Namespace) -> int:
    sets = BenchmarkSets(args.lfw, args.lfw_folds, args.pairs, args.bin, args.identify, args.templates)
    entries = sets.entries(args.detector, args.degrade)
    if args.protocols:
        entries += read_protocol_list(args.protocols)
    if not entries:
        raise ConfigError(
            "nothing to run: give --protocols FILE and/or data sets (--lfw, --pairs, --bin, --identify, --templates)"
        )
    pipelines = pipeline_source(args.model, args.runtime, device=args.device, batch_size=args.batch_size)
    out = Path(args.out)
    bench = run_benchmark(entries, pipelines, out_dir=out, progress=True)
    print(markdown_table(bench))
    print(f"table in {out / 'benchmark.md'}, report in {out / 'benchmark.json'}")
    return 0


@command("benchmark", "run several evaluation protocols on one model and write one table", run_benchmark_command)
def _benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="'default', 'dlib', 'resnet128', 'fast', a model.pt / checkpoint or an exported .onnx")
    p.add_argument(
        "--protocols",
        help="YAML/JSON list of protocol entries ({name, options, detector, degrade}), or a training config "
        "(its train.eval list)",
    )
    p.add_argument("--lfw", help="LFW folder (images/ and meta/): View 2 ten folds")
    p.add_argument("--lfw-folds", type=int, nargs="+", help="only these LFW folds (0-based)")
    p.add_argument("--pairs", nargs="*", default=[], help="pairs CSVs (path1,path2,label[,fold])")
    p.add_argument("--bin", nargs="*", default=[], help="insightface .bin files of aligned pairs")
    p.add_argument("--identify", nargs="*", default=[], help="identity-folder trees for 1:N identification")
    p.add_argument("--templates", nargs="*", default=[], help="template sets in the IJB-C layout (eval templates)")
    p.add_argument("--detector", default="mtcnn", help="how faces are found in the sets named by flags")
    p.add_argument(
        "--degrade", type=int, nargs="+", default=[0], help="also score faces degraded to N px (0: as they are)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add_runtime_argument(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per network call")
    p.add_argument("--out", default="runs/benchmark", help="folder for benchmark.md/json and each protocol's report")
