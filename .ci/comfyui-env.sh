#!/usr/bin/env bash
# Build (or reuse) a real ComfyUI v0.3.64 and its CPU Python environment OUTSIDE the clone, as
# ../shared/comfyui/README.md describes, for the integration suite (tests/comfyui).
#
#   bash .ci/comfyui-env.sh [CACHE_DIR]      prints COMFYUI_DIR=... and COMFYUI_PYTHON=... lines
#
# The environment holds ComfyUI's own requirements and nothing of the pack's: it stands for a user's
# ComfyUI before the pack is installed. It is rebuilt when the source archive or this script changes;
# a finished build is marked by a stamp file, so an interrupted build is redone, never reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
archive="$(cd "$repo/.." && pwd)/shared/comfyui/ComfyUI-v0.3.64.tar.gz"
cache="${1:-${IMGEDIT_CI_CACHE:-/var/tmp/comfyui-imgedit-ci}}"
[ -f "$archive" ] || { echo "comfyui-env: $archive is missing (../shared must sit beside the clone)" >&2; exit 2; }

key="$( (sha256sum "$archive" | cut -c1-64; sha256sum "$0" | cut -c1-64) | sha256sum | cut -c1-16)"
root="$cache/$key"
stamp="$root/.built"
log() { echo "comfyui-env: $*" >&2; }

if [ ! -f "$stamp" ]; then
    log "building ComfyUI v0.3.64 environment in $root"
    rm -rf "$root"
    mkdir -p "$root"
    tar xzf "$archive" -C "$root"                     # -> $root/ComfyUI
    python3 -m venv "$root/venv"
    # (the grep drops this machine's pip notes about absent local index folders)
    pip() { "$root/venv/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # CPU torch first, then kept pinned for every later install (one requirement would pull CUDA).
    pip install -q torch==2.13.0
    echo "torch==2.13.0" > "$root/constraints.txt"
    grep -vE '^(torch|torchvision|torchaudio)\s*$' "$root/ComfyUI/requirements.txt" > "$root/requirements-no-torch.txt"
    pip install -q -c "$root/constraints.txt" -r "$root/requirements-no-torch.txt"
    # Only the Python parts of torchvision/torchaudio: the registry's builds are CUDA builds whose
    # compiled ops cannot load beside CPU torch (torchvision 0.16 only warns when its ops are absent).
    pip install -q --no-deps torchvision==0.16.2 torchaudio==2.1.2
    site="$("$root/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    find "$site/torchvision" "$site/torchaudio" -name '*.so' -delete
    "$root/venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
    touch "$stamp"
    log "built"
else
    log "reusing $root"
fi
echo "COMFYUI_DIR=$root/ComfyUI"
echo "COMFYUI_PYTHON=$root/venv/bin/python"
