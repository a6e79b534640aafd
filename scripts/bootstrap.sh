#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for PushaaS: system packages (only those
# missing), a virtualenv in .venv and the Python packages. Safe to run again: it only
# does what is left to do.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: PushaaS needs Python 3.11 or newer as '$python'" >&2
    exit 1
fi

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
ls /usr/lib/nginx/modules/ngx_nchan_module.so /usr/share/nginx/modules/ngx_nchan_module.so \
    >/dev/null 2>&1 || missing+=(libnginx-mod-nchan)
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# Extra packages a target needs (make test: chromium), each only when not installed yet.
for package in ${EXTRA_DEBIAN_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi

stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt containers/push-agent/requirements.txt \
    | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "bootstrap: installing Python packages"
    # chalice 1.34 packages with pip and accepts pip below 26.3, so pip is pinned too.
    .venv/bin/python -m pip install -q "pip>=25,<26.3"
    .venv/bin/python -m pip install -q -r requirements-dev.txt \
        -r containers/push-agent/requirements.txt
    echo "$wanted" > "$stamp"
fi

# The pushaas client and CLI, editable: code changes need no reinstall, pyproject.toml
# changes do. --no-deps: requirements-dev.txt above already brought its dependencies.
cli_stamp=.venv/.pushaas-cli.sha256
wanted=$(cat pyproject.toml requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$cli_stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/pushaas ]; then
    echo "bootstrap: installing the pushaas command"
    .venv/bin/python -m pip install -q --no-deps -e .
    echo "$wanted" > "$cli_stamp"
fi
