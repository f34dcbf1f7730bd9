#!/usr/bin/env bash
# Set up everything fanren needs on a fresh Debian/Ubuntu machine, then render the example or test.
#
#   bash scripts/bootstrap.sh demo   set up, render examples/xianxia (draft profile), print the episode
#   bash scripts/bootstrap.sh test   set up, run the whole test suite
#
# Idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"

apt_packages=(ffmpeg espeak-ng fonts-noto-cjk fontconfig python3-venv)
# the live-page tests drive Debian's Chromium headless (no browser download)
[ "$what" = test ] && apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "==> apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "==> installing torch==2.13.0"
  "${pip[@]}" torch==2.13.0
fi
echo "==> installing fanren (editable) with every extra (gpu, check, serve, ray, remote, export, comfyui) and the test tools"
"${pip[@]}" -e ".[gpu,check,serve,ray,remote,export,comfyui,test]"

case "$what" in
  demo)
    .venv/bin/fanren build examples/xianxia
    echo
    echo "Play it:  ffplay examples/xianxia/out/draft/episode.mp4   (or open it in any video player)"
    echo "Look at:  examples/xianxia/out/draft/storyboard.html"
    ;;
  test)
    exec .venv/bin/python -m pytest -q "${@:2}"
    ;;
  *)
    echo "usage: bash scripts/bootstrap.sh demo|test" >&2
    exit 2
    ;;
esac
