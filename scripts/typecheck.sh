#!/usr/bin/env bash
# mypy --strict on treadle.runtime and treadle.storage. The source folders are
# runtime/ and storage/ (mapped by setuptools), so give mypy a tree in which
# they sit at treadle/runtime and treadle/storage.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.mypy-src
rm -rf "$tree" && mkdir -p "$tree/treadle"
ln -s ../../runtime "$tree/treadle/runtime"
ln -s ../../storage "$tree/treadle/storage"
MYPYPATH="$tree" "${PYTHON:-.venv/bin/python}" -m mypy --strict -p treadle.runtime -p treadle.storage
