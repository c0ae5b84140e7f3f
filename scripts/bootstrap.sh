#!/usr/bin/env bash
# Creates .venv with a Python >= 3.12 (PATH first, then pyenv) and installs the project into it.
# Usage: scripts/bootstrap.sh [EXTRAS]   — e.g. "test" or "test,bench": optional dependency groups.
# Re-runs are cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extra="${1:-}"

is_new_enough() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local c p v
  for c in python3.13 python3.12 python3 python; do
    p="$(command -v "$c" 2>/dev/null)" || continue
    if is_new_enough "$p"; then echo "$p"; return 0; fi
  done
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  if command -v pyenv >/dev/null 2>&1; then pyenv_root="$(pyenv root)"; fi
  if [ -d "$pyenv_root/versions" ]; then
    for v in $(ls -1 "$pyenv_root/versions" | grep -E '^3\.[0-9]+\.[0-9]+$' | sort -t. -k1,1n -k2,2n -k3,3n -r); do
      p="$pyenv_root/versions/$v/bin/python"
      if [ -x "$p" ] && is_new_enough "$p"; then echo "$p"; return 0; fi
    done
  fi
  return 1
}

if [ ! -x "$venv/bin/python" ] || ! is_new_enough "$venv/bin/python"; then
  py="$(find_python)" || { echo "bootstrap: no Python >= 3.12 found on PATH or in pyenv; install one." >&2; exit 1; }
  echo "bootstrap: creating .venv with $("$py" -V 2>&1) ($py)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
fi

# The stamp records the pyproject.toml it installed and the extras: reinstall only when either falls short.
hash="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
stamp="$venv/.antigravity-installed"
read -r have_hash have_extras < "$stamp" 2>/dev/null || { have_hash=""; have_extras=""; }
[ "$have_hash" = "$hash" ] || have_extras=""
missing=""
for e in ${extra//,/ }; do
  case ",$have_extras," in *",$e,"*) ;; *) missing="$missing,$e" ;; esac
done
if [ "$have_hash" != "$hash" ] || [ -n "$missing" ]; then
  all="$(echo "${have_extras}${missing}" | sed 's/^,//')"
  target="."
  [ -n "$all" ] && target=".[$all]"
  echo "bootstrap: installing $target into .venv" >&2
  (cd "$root" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target" >&2)
  echo "$hash ${all:-,}" > "$stamp"
fi
