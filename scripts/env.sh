# Sourced by the other scripts: a virtualenv in .venv with h2proxy installed
# (editable) plus its test extras. Idempotent and quick when already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating virtualenv in .venv" >&2
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import h2proxy, pytest, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    echo "installing h2proxy and its test dependencies into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi
export PATH="$ROOT/.venv/bin:$PATH"
