#!/usr/bin/env bash
# Creates .venv with a Python >= 3.12 (PATH first, then pyenv) and installs the project into it.
# Usage: scripts/bootstrap.sh [EXTRAS]   — e.g. "test" or "test,bench": optional dependency groups.
# With "test" it also makes sure a redis-server is installed (scripts/ensure-redis.sh): the shared-state
# tests start one on loopback.
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
  py="$(find_python)" || {
    echo "bootstrap: antigravity-gateway needs Python 3.12 or newer; none was found on PATH (python3.13," \
         "python3.12, python3, python) or in pyenv ($(python3 -V 2>&1 || echo 'no python3'))." >&2
    echo "bootstrap: install one, e.g. 'sudo apt install python3.12 python3.12-venv' (Debian/Ubuntu)," \
         "'brew install python@3.12' (macOS) or 'pyenv install 3.12', then run this command again." >&2
    exit 1
  }
  echo "bootstrap: creating .venv with $("$py" -V 2>&1) ($py)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
fi

# The stamp records the pyproject.toml it installed and the extras, as "HASH EXTRA,EXTRA" ("-" for none):
# reinstall only when the file changed or an extra is missing, and then with every extra seen so far.
hash="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
stamp="$venv/.antigravity-installed"
have_hash="" have_extras=""
if [ -f "$stamp" ]; then read -r have_hash have_extras < "$stamp" || true; fi
[ "$have_hash" = "$hash" ] || have_extras=""
wanted=()
for e in ${have_extras//,/ } ${extra//,/ }; do
  [ "$e" = "-" ] && continue
  case " ${wanted[*]-} " in *" $e "*) ;; *) wanted+=("$e") ;; esac
done
all="$(IFS=,; echo "${wanted[*]-}")"
if [ "$have_hash" != "$hash" ] || [ "$all" != "${have_extras#-}" ]; then
  target="."
  [ -n "$all" ] && target=".[$all]"
  echo "bootstrap: installing $target into .venv" >&2
  (cd "$root" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target" >&2)
  echo "$hash ${all:--}" > "$stamp"
fi

case ",$all," in
  *,test,*) "$root/scripts/ensure-redis.sh" || true ;;  # it says why; those tests then skip
esac
