# Development shortcuts. `make install test` is what CI does (see .ci/run).
PY ?= python
# The compiler flags setup.py and CMakeLists.txt use too (why each: csrc/compile_flags.txt).
COMPILE_FLAGS := $(shell grep '^-' csrc/compile_flags.txt)

.PHONY: install demo test test-all test-cpp test-cpp-aarch64 test-cuda test-sanitize bench bench-smoke lint format

install:
	$(PY) -m pip install torch==2.13.0
	CHATVEC_REQUIRE_NATIVE=1 $(PY) -m pip install -e ".[test,bench,dev]"

demo:
	chatvec demo

test:
	$(PY) -m pytest -q -n auto

test-all:  # includes the slow tests
	$(PY) -m pytest -q -n auto -m ""

test-cpp:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j && ctest --test-dir build --output-on-failure

test-cpp-aarch64:  # needs g++-aarch64-linux-gnu and qemu-user (Debian)
	aarch64-linux-gnu-g++ -std=c++17 $(COMPILE_FLAGS) -Wall -Wextra -Icsrc -pthread \
	  tests/cpp/test_kernel.cpp tests/cpp/test_fp8_convert.cpp tests/cpp/test_fp8_kernel.cpp $(filter-out csrc/bindings%.cpp,$(wildcard csrc/*.cpp)) -o build/test_kernel_aarch64
	qemu-aarch64 -L /usr/aarch64-linux-gnu build/test_kernel_aarch64

# The CUDA kernel (csrc/cuda/) without a GPU: nvcc build for sm_80 + sm_90 (CHATVEC_CUDA=1: no nvcc is an
# error), its SASS checks (the table of docs/PERFORMANCE.md), and its element code run on the host against
# the C++ kernel and the oracle (the kernel grid's cuda column, CHATVEC_CUDA_HOST=1).
test-cuda:
	$(PY) -m pip install --quiet "pybind11>=2.12"  # setup.py's build tool: pip's isolated build has it, a plain setup.py call needs it here
	CHATVEC_CUDA=1 $(PY) setup.py build_ext --inplace
	$(PY) -m benchmarks.codegen_cuda
	CHATVEC_CUDA_HOST=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_cuda_codegen.py \
	  tests/test_kernel.py tests/test_fp8_kernel.py tests/test_fp8_rounding.py tests/test_rounding.py -k "cuda"

# AddressSanitizer + UBSan: the C++ tests, then the Python kernel and boundary tests against a sanitized
# build of the extension (loaded ahead of the installed one through PYTHONPATH).
ASAN_LIBS = $(shell gcc -print-file-name=libasan.so):$(shell gcc -print-file-name=libubsan.so)
test-sanitize:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHATVEC_SANITIZE=ON -DCHATVEC_PYTHON=ON \
	  -Dpybind11_DIR=$$($(PY) -c "import pybind11; print(pybind11.get_cmake_dir())") -DPython_EXECUTABLE=$$(which $(PY))
	cmake --build build-asan -j
	./build-asan/test_kernel
	rm -rf build-asan/pkg && mkdir -p build-asan/pkg && cp -r chatvec_fast build-asan/pkg/ && cp -r kernels build-asan/pkg/chatvec_fast/kernels
	rm -f build-asan/pkg/chatvec_fast/_C*.so && cp build-asan/_C*.so build-asan/pkg/chatvec_fast/
	cd build-asan && ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(ASAN_LIBS) PYTHONPATH=$$PWD/pkg \
	  $(PY) -m pytest -q -p no:cacheprovider --rootdir .. ../tests/test_kernel.py ../tests/test_reliability.py \
	  ../tests/test_fp8_kernel.py ../tests/test_fp8_rounding.py ../tests/test_apply_vectors.py ../tests/test_call_boundary.py \
	  ../tests/test_inspect_sums.py \
	  -k "(native or grid or boundary or instruction or thread) and not triton"

bench-smoke:  # every benchmark script on tiny models, so none of them rots (CI runs this)
	CHATVEC_BENCH_SMOKE=1 $(PY) -m pytest benchmarks -q --benchmark-only -p no:cacheprovider
	$(PY) benchmarks/bench_gpu.py --smoke --json /tmp/chatvec-bench-smoke/gpu.json
	$(PY) -m benchmarks.compare --size tiny --rounds 1 --out-dir /tmp/chatvec-bench-smoke/compare
	$(PY) benchmarks/bench_kernel.py --elements 1048576 --reps 1
	$(PY) benchmarks/bench_fp8_kernel.py --elements 1048576 --reps 1
	$(PY) -m benchmarks.bench_fp8 --smoke --json /tmp/chatvec-bench-smoke/fp8.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_formats.py --size tiny --rounds 1 --json /tmp/chatvec-bench-smoke/formats.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_memory.py --size tiny --rounds 1 --out /tmp/chatvec-bench-smoke/memory.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_verify.py --size tiny --rounds 1 --json /tmp/chatvec-bench-smoke/verify.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke TRITON_INTERPRET=1 $(PY) benchmarks/bench_memory.py --gpu --device cpu --size tiny --rounds 1 --out /tmp/chatvec-bench-smoke/memory-gpu.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/compare_commits.py HEAD --size tiny --rounds 1 --no-sweep --json /tmp/chatvec-bench-smoke/commits.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_inspect.py --size tiny --rounds 1 --json /tmp/chatvec-bench-smoke/inspect.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_tune.py --size tiny --alphas 0,1 --max-new-tokens 2 --window 16 --json /tmp/chatvec-bench-smoke/tune.json
	CHATVEC_BENCH_DIR=/tmp/chatvec-bench-smoke $(PY) benchmarks/bench_tune.py --size tiny --alphas 0,1 --max-new-tokens 2 --window 16 --disk-route merge --json /tmp/chatvec-bench-smoke/tune-merge.json

bench:
	$(PY) benchmarks/bench_kernel.py
	$(PY) benchmarks/bench_fp8_kernel.py
	$(PY) -m benchmarks.compare --size 1b --rounds 5
	$(PY) benchmarks/bench_sweep.py --rounds 3
	$(PY) -m benchmarks.bench_fp8 --rounds 3
	$(PY) benchmarks/bench_formats.py --rounds 3
	$(PY) benchmarks/bench_memory.py --rounds 3
	$(PY) benchmarks/bench_verify.py --rounds 5

lint:
	ruff check . && ruff format --check .
	clang-format --dry-run --Werror csrc/*.cpp csrc/*.h tests/cpp/*.cpp

format:
	ruff check --fix . && ruff format .
	clang-format -i csrc/*.cpp csrc/*.h tests/cpp/*.cpp
