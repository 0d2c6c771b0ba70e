# The two commands a newcomer types:
#   make lab    open the course in JupyterLab
#   make test   run every test (pytest over tests/, nbval over notebooks/ and solutions/)
# Both create .venv and install the course into it the first time.

PYTHON ?= python3
VENV   := .venv
# A venv keeps its programs in bin/ (Linux, macOS) or Scripts/ (Windows).
BIN    := $(VENV)/$(if $(filter Windows_NT,$(OS)),Scripts,bin)
STAMP  := $(VENV)/.installed-stamp

# The course's files are UTF-8. Windows' Python reads and writes text in the
# ANSI code page unless told otherwise; UTF-8 mode makes it read them as they are.
ifeq ($(OS),Windows_NT)
export PYTHONUTF8 := 1
endif

# Extra pytest options for `make test`, e.g. PYTEST_ARGS=--junitxml=build/report.xml (CI).
PYTEST_ARGS ?=

# JupyterLab refuses to run as root (Docker, Binder, CI) unless told.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: lab test fuzz browser-test cross-tools exercises check bench clean

# Quiet, with a line before and after: setuptools' notices about editable
# installs (PYTHONWARNINGS=ignore) are for package maintainers, not learners.
$(STAMP): pyproject.toml
	@echo "minildr: installing the course into $(VENV)/ (first run only; a few minutes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --progress-bar on -e '.[dev]'
	@touch $@
	@echo "minildr: $(VENV)/ is ready."

# LAB_ARGS: extra JupyterLab options (the browser test sets port and token).
# The whole course is served (notebooks/, exercises/, solutions/), and the
# browser opens on notebook 00.
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(ALLOW_ROOT) \
		--LabApp.default_url=/lab/tree/notebooks/00-the-plugin-problem.ipynb $(LAB_ARGS)

# --nbval-current-env: run notebooks with this .venv's Python, not whatever
# "python3" kernel happens to be installed on the machine.
# -n: tests run in parallel worker processes (pytest-xdist); --dist loadfile
# keeps each file (and each notebook's cells, in order) in one worker. Many
# tests wait on compilers and kernels, so more workers than cores pays.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks solutions --nbval --nbval-current-env \
		--nbval-sanitize-with tests/sanitize.cfg --ignore=tests/browser \
		-n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The fuzzers with long budgets (make test runs each with a short one).
# MINILDR_FUZZ_SCALE multiplies every fuzzer's number of examples.
FUZZ_SCALE ?= 20
fuzz: $(STAMP)
	MINILDR_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest -m fuzz tests \
		-n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider $(PYTEST_ARGS)

# The course as a person uses it: `make lab` serving notebook 02 to headless
# Chromium, which runs every cell; needs Debian's chromium and chromedriver
# (installed here if missing, as root). The screenshot lands in build/browser/.
browser-test: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq chromium chromium-driver >/dev/null; }
	$(BIN)/python -m pytest tests/browser -p no:cacheprovider

# The cross toolchains tests/formats/test_crossbuild.py rebuilds the Windows and macOS
# fixtures with, and wine, which loads the DLLs (Debian packages, installed if
# missing, as root; about 1.2 GB), and g++, which builds the C++ plugin of
# tests/native/test_native_cxx.py. Without them those tests skip and say why.
CROSS_PACKAGES := gcc-mingw-w64-x86-64 clang lld llvm wine64 g++
cross-tools:
	@missing=$$(for p in $(CROSS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "cross-tools: installing" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

# Regenerate exercises/ from solutions/ (after editing a solution notebook).
exercises: $(STAMP)
	$(BIN)/python -m minildr.course.exercises

# A learner's progress: run my exercise notebooks, show which tasks are done.
check: $(STAMP)
	@$(BIN)/python -m minildr.course.selfcheck exercises

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_native.py
	$(BIN)/python benchmarks/bench_contract.py
	$(BIN)/python benchmarks/bench_isolate.py
	$(BIN)/python benchmarks/bench_boundaries.py --plot --save

clean:
	rm -rf $(VENV) notebooks/build solutions/build exercises/build build/go-cache build/go-tests .pytest_cache
