"""Embedding throughput of backbones on the CPU: faces per second for aligned crops (network
only, no detection), with the parameter count and the fp32 size. Weights do not change the
cost, so untrained backbones stand in for trained ones of the same shape.

    python benchmarks/embed_throughput.py --threads 2
    python benchmarks/embed_throughput.py --models dlib mobilefacenet@112 lowres_irse8@36 --batch 32
    python benchmarks/embed_throughput.py --models dlib fast mobilefacenet@80 mobilefacenet@64:width_mult=1.25
    python benchmarks/embed_throughput.py --models dlib-cpp dlib resnet128 fast   # dlib's C++ and the torch rebuild
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from facerec.models import build_backbone
from facerec.models.io import load_recognition_model

DEFAULT = ["dlib", "mobilefacenet@112", "iresnet50@112", "lowres_irse8@36"]


def network(spec: str) -> tuple[torch.nn.Module, int]:
    """'dlib-cpp' (dlib's network in dlib's own C++), a named model ('dlib': its torch rebuild),
    'NAME@SIZE[:OPTION=NUMBER,...]' (a registered backbone, 128-d, e.g.
    mobilefacenet@64:width_mult=1.25) or a facerec model file."""
    if spec == "dlib-cpp":
        from facerec.models.reference import DlibResNet

        return DlibResNet(), DlibResNet.input_size
    if "@" in spec:
        name, rest = spec.split("@")
        size, _, options = rest.partition(":")
        kwargs = {k: float(v) for k, v in (item.split("=") for item in options.split(",") if item)}
        return build_backbone(name, 128, int(size), kwargs).eval(), int(size)
    model = load_recognition_model(spec)
    return model.net.eval(), model.input_size


def weight_count(net: torch.nn.Module) -> int:
    """Learned numbers: parameters, or weights kept as buffers (the dlib port), without the
    BatchNorm running statistics."""
    state = net.state_dict()
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in state.items() if v.is_floating_point() and not k.endswith(skip))


@torch.no_grad()
def faces_per_second(net: torch.nn.Module, size: int, batch: int, repeats: int) -> float:
    x = torch.randn(batch, 3, size, size)
    net(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.machine()}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}\n")
    print("| model | input | weights | fp32 size (MB) | faces/s |")
    print("|---|---|---|---|---|")
    for spec in args.models:
        net, size = network(spec)
        rate = faces_per_second(net, size, args.batch, args.repeats)
        params = weight_count(net)
        if params:
            weights, megabytes = f"{params / 1e6:.2f}M", f"{params * 4 / 2**20:.1f}"
        else:  # dlib's own network: no torch weights; the size of its model file
            from facerec.align.dlib_models import model_file

            file = model_file("dlib_face_recognition_resnet_model_v1.dat")
            weights, megabytes = "(dlib file)", f"{file.stat().st_size / 2**20:.1f}"
        name = f"{spec.split('@')[0]} {spec.partition(':')[2]}".strip()
        print(f"| {name} | {size}x{size} | {weights} | {megabytes} | {rate:.1f} |")


if __name__ == "__main__":
    main()
