#!/usr/bin/env bash
# Makes sure a redis-server (or valkey-server) is on PATH: the tests of ag_state_url start a real one on
# loopback. Quiet and quick when one is there; otherwise installs Debian's/Ubuntu's redis-server with
# apt-get (as root, or with passwordless sudo) or Homebrew's redis. Exits non-zero, saying why, when it can't.
set -euo pipefail

have_server() { command -v redis-server >/dev/null 2>&1 || command -v valkey-server >/dev/null 2>&1; }
have_server && exit 0

as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then as_root=(sudo -n); else as_root=(none); fi
fi

if command -v apt-get >/dev/null 2>&1 && [ "${as_root[0]-}" != none ]; then
  echo "ensure-redis: installing redis-server with apt-get (for the shared-state tests)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { "${as_root[@]}" apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; }
  apt_install || { "${as_root[@]}" apt-get update -q >/dev/null 2>&1 && apt_install; } || true
elif command -v brew >/dev/null 2>&1; then
  echo "ensure-redis: installing redis with Homebrew (for the shared-state tests)" >&2
  brew install --quiet redis >/dev/null 2>&1 || true
fi

have_server && exit 0
echo "ensure-redis: no redis-server or valkey-server on PATH and it could not be installed (needs apt-get as" \
     "root or passwordless sudo, or Homebrew); the shared-state (ag_state_url) tests will be skipped" >&2
exit 1
