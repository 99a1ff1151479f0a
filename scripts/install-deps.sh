#!/usr/bin/env bash
# Installs the Debian packages Distill builds and runs with, when any is missing.
set -euo pipefail
packages=(libdnnl-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing missing packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Light Python oracles for interoperability tests (PyTorch itself is only needed to
# regenerate fixtures). Tests that need them say so and skip when they are absent.
if [ "${1:-}" = "--test-oracles" ] && command -v python3 >/dev/null; then
  python3 -c "import safetensors, numpy, onnx, onnxruntime" 2>/dev/null || \
    python3 -m pip install -q safetensors numpy onnx onnxruntime || \
    echo "warning: could not install safetensors/numpy/onnx/onnxruntime; interoperability tests will be skipped"
fi
exit 0
