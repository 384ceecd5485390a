#!/usr/bin/env bash
# Install the system packages pipeline-studio needs, where we can; otherwise say exactly what to install.
# Usage: scripts/system-deps.sh run|test   (test adds espeak-ng and a browser for the test suite)
set -u
want=(tesseract:tesseract-ocr ffmpeg:ffmpeg)
if [ "${1:-run}" = "test" ]; then
  want+=(espeak-ng:espeak-ng)
  [ -x /usr/bin/chromium ] || want+=(chromium:chromium)
fi
missing=()
for pair in "${want[@]}"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo=none; fi
if [ "$sudo" != none ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    && exit 0
  echo "apt-get could not install: ${missing[*]}"
fi
echo "Missing system packages: ${missing[*]}"
echo "  Debian/Ubuntu: sudo apt-get install ${missing[*]}"
echo "  macOS:         brew install ${missing[*]/tesseract-ocr/tesseract}"
echo "The app still runs; the Document tab needs tesseract-ocr for scanned pages, and audio other than"
echo "WAV/FLAC/OGG needs ffmpeg."
if [ "${1:-run}" = "test" ] && [[ " ${missing[*]} " == *" chromium "* ]]; then
  echo "No Debian chromium: browser tests will use Playwright's own Chromium (make test installs it)."
fi
exit 0
