#!/usr/bin/env bash
# The browser the web UI's tests drive (Playwright through `executable_path`): Debian's
# Chromium. Installs it only when missing; Playwright never downloads a browser of its own.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing and apt-get is not available: install Chromium and put it on PATH" >&2
    echo "(or point MARKETPAY_CHROMIUM at it)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's chromium (for the browser tests)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
