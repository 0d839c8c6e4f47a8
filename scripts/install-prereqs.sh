#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a fresh Debian machine: uv, Go, Chromium and
# PostgreSQL.
# Idempotent: tools already on PATH are left alone.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v go >/dev/null 2>&1; then
  echo "Installing Go (Debian golang-go) for the offline bundle init..."
  apt_install golang-go
fi

# tests/test_chat_ui_browser.py: Debian's Chromium and its matching driver (never a downloaded
# browser).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "Installing Chromium and chromedriver (Debian) for the chat page's browser test..."
  apt_install chromium chromium-driver
fi

# The memory tests of generated projects (prompt memory): a throwaway PostgreSQL cluster made
# with Debian's server programs (initdb, pg_ctl), standing in for Lakebase.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "Installing PostgreSQL (Debian postgresql) for the generated projects' memory tests..."
  apt_install postgresql
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "Installing uv..."
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  hash -r
fi

if ! command -v uv >/dev/null 2>&1; then
  # pip installed uv for this user only; make it reachable for the rest of this run.
  echo "uv was installed into $(python3 -m site --user-base)/bin: add it to PATH." >&2
  exit 1
fi
echo "Prerequisites: $(go version | cut -d' ' -f3), $(uv --version), $(chromium --version 2>/dev/null | head -n 1)"
