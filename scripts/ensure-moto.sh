#!/usr/bin/env bash
# Makes sure moto's DynamoDB-compatible server can be started with `python3 -m moto.server`.
#
# Idempotent and quick on rerun: pip is only called when `import moto.server` fails.
# Works as root on a fresh Debian machine that has python3 and pip (PyPI must be reachable).
# Used by the jiva-store-dynamo integration tests (see docs/dynamodb.md).
set -euo pipefail

PYTHON="${PYTHON:-python3}"

if "$PYTHON" -c 'import moto.server' >/dev/null 2>&1; then
    echo "ensure-moto: moto server already importable ($("$PYTHON" -c 'import moto; print(moto.__version__)'))"
    exit 0
fi

echo "ensure-moto: installing moto[server] with pip" >&2
pip_install() {
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" 'moto[server]'
}
# Debian's system python refuses global installs (PEP 668) unless told otherwise.
if ! pip_install; then
    echo "ensure-moto: retrying with --break-system-packages (externally managed python)" >&2
    pip_install --break-system-packages
fi

"$PYTHON" -c 'import moto.server' || {
    echo "ensure-moto: moto installed but 'import moto.server' still fails" >&2
    exit 1
}
echo "ensure-moto: moto $("$PYTHON" -c 'import moto; print(moto.__version__)') ready"
