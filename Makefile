# Development shortcuts. `make install test` is what CI does (see .ci/run).
PY ?= python

.PHONY: install demo test test-all test-cpp bench lint format

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

bench:
	$(PY) benchmarks/bench_kernel.py
	$(PY) benchmarks/bench_merge.py --rounds 5

lint:
	ruff check . && ruff format --check .
	clang-format --dry-run --Werror csrc/*.cpp csrc/*.h tests/cpp/*.cpp

format:
	ruff check --fix . && ruff format .
	clang-format -i csrc/*.cpp csrc/*.h tests/cpp/*.cpp
