#!/usr/bin/env bash
# One setup path for a fresh machine, CI and every README command. Idempotent: when the venv is
# current and Chromium is present it returns in about a second.
#   - .venv with the project and its dev extras (editable), re-installed when pyproject changes
#   - Debian's chromium (nodriver drives it), installed with apt when missing
#   - postgresql only with --postgres (the multi-machine profile and its tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_pg=0
for arg in "$@"; do
  case "$arg" in
    --postgres) want_pg=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ ! -f /var/lib/apt/periodic/.phx-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    $sudo apt-get update -qq
    $sudo mkdir -p /var/lib/apt/periodic && $sudo touch /var/lib/apt/periodic/.phx-updated
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium (about a minute)"
  apt_install chromium
fi
if [ "$want_pg" = 1 ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "setup: installing Debian's postgresql"
  apt_install postgresql
fi

py=${PYTHON:-python3}
stamp=.venv/.phx-installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python -c "import prefect, nodriver, curl_cffi, imagehash, PIL, pydantic_settings" \
    || { echo "setup: Python packages failed to install" >&2; exit 1; }
  touch "$stamp"
fi
