# Development shortcuts. `make install test` is what CI does (see .ci/run).
PY ?= python

.PHONY: install demo test test-all test-cpp test-cpp-aarch64 bench lint format

install:
	$(PY) -m pip install torch==2.13.0
	CHATVEC_REQUIRE_NATIVE=1 $(PY) -m pip install -e ".[test,bench,dev]"

demo:
	chatvec demo

test:
	$(PY) -m pytest -q

test-all:  # includes the slow tests
	$(PY) -m pytest -q -m ""

test-cpp:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j && ctest --test-dir build --output-on-failure

test-cpp-aarch64:  # needs g++-aarch64-linux-gnu and qemu-user (Debian)
	aarch64-linux-gnu-g++ -std=c++17 -O3 -ffp-contract=off -fno-trapping-math -Wall -Wextra -Icsrc -pthread \
	  tests/cpp/test_kernel.cpp $(filter-out csrc/bindings.cpp,$(wildcard csrc/*.cpp)) -o build/test_kernel_aarch64
	qemu-aarch64 -L /usr/aarch64-linux-gnu build/test_kernel_aarch64

bench:
	$(PY) benchmarks/bench_kernel.py
	$(PY) benchmarks/bench_merge.py --rounds 5

lint:
	ruff check . && ruff format --check .
	clang-format --dry-run --Werror csrc/*.cpp csrc/*.h tests/cpp/*.cpp

format:
	ruff check --fix . && ruff format .
	clang-format -i csrc/*.cpp csrc/*.h tests/cpp/*.cpp
