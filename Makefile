# trellis — the two commands a new user needs are `make demo` and `make test`.
# Every target installs what it needs (scripts/install-deps.sh) and builds.

PY        := /usr/bin/python3
BUILD     := build
JOBS      ?= $(shell nproc)
ROWS      ?= 2000000
export PYTHONPATH := $(CURDIR)/$(BUILD)/python:$(PYTHONPATH)

.PHONY: all deps configure build test test-cpp test-python check-thread-safety demo demo-cpp demo-housing demo-cluster demo-parallel bench format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DPython3_EXECUTABLE=$(PY)

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build check-thread-safety
	cd $(BUILD) && ctest --output-on-failure -j 1
	@if [ -d python/tests ] && ls python/tests/test_*.py >/dev/null 2>&1; then \
	  $(PY) -m pytest -q python/tests; fi

# clang's thread-safety analysis over the libraries (not tests, benchmarks or
# the Python extension, to keep it quick): a member read without the mutex
# that guards it (TRELLIS_GUARDED_BY, common/thread_annotations.h) fails it.
TSA_BUILD := build-tsa
check-thread-safety: deps
	CC=clang CXX=clang++ cmake -S . -B $(TSA_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 \
	  -DCMAKE_CXX_FLAGS="-Wthread-safety -Werror=thread-safety" \
	  -DTRELLIS_BUILD_TESTS=OFF -DTRELLIS_BUILD_BENCH=OFF \
	  -DTRELLIS_BUILD_PYTHON=OFF >/dev/null
	cmake --build $(TSA_BUILD) -j $(JOBS) --target trellis trellis_server \
	  trellis_common

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j 1

test-python: build
	$(PY) -m pytest -q python/tests

demo: demo-cpp demo-housing demo-parallel

# The main job: the seed's preprocess -> train -> test pipeline through trellis
# (embedded daemon), pickle files on disk and pickle files in /dev/shm.
demo-housing: build
	$(PY) examples/housing/run_pipeline.py --rows $(ROWS)

# The seed's parallel pandas job, short: serial vs trellis on 1 and 2 workers.
demo-parallel: build
	$(PY) examples/parallel_pandas/demo.py --rows 10000

# The housing flow on two test hosts (network namespaces, root) with the
# dask executor, data affinity on and off: bytes moved and time.
demo-cluster: build
	$(PY) examples/housing/run_cluster.py --rows $(ROWS)

demo-cpp: build
	@bash scripts/demo_cpp.sh $(BUILD)/bin

bench: build
	@bash bench/run.sh $(BUILD)

format: deps
	@git ls-files '*.cc' '*.h' | xargs clang-format -i --style=file
	@echo "formatted $$(git ls-files '*.cc' '*.h' | wc -l) files"

clean:
	rm -rf $(BUILD) $(TSA_BUILD)
