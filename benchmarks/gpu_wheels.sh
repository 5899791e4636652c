#!/usr/bin/env bash
# The wheels benchmarks/gpu_session.sh installs on a GPU machine that has no network (Python 3.12, x86-64):
# what its stack lacks to build and test the package. Each is far under the 64 MiB a carried file may have.
#
#   bash benchmarks/gpu_wheels.sh      # then carry .gpu-wheels with the working tree
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --only-binary :all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform any --no-deps -d .gpu-wheels \
  pybind11 pytest-benchmark py-cpuinfo hypothesis attrs sortedcontainers py3langid
ls -la .gpu-wheels
