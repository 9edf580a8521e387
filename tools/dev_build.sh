#!/usr/bin/env bash
# Developer build: compile one (or every) extension module into python/xpress_fast/ in place,
# in a private build directory, so `PYTHONPATH=python pytest` uses it without reinstalling.
#   tools/dev_build.sh [TARGET] [BUILD_DIR]     e.g. tools/dev_build.sh _metrics build/dev-metrics
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
bdir=${2:-build/dev}
if [ ! -f "$bdir/CMakeCache.txt" ]; then
  cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSKBUILD_PROJECT_NAME=xpress_fast -DSKBUILD_PROJECT_VERSION=0.1.0 \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/python/xpress_fast" >/dev/null
fi
cmake --build "$bdir" --target "$target"
