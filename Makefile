# The two commands a newcomer types:
#   make lab    open the course in JupyterLab
#   make test   the tests (pytest over tests/, nbval over notebooks/ and solutions/; make cross-test: the emulator runs)
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

.PHONY: lab test cross-test test-profile test-direct-start fuzz fuzz-differential go-toolchains browser-test chromium node site site-test hub-env hub-test cross-tools exercises check bench clean

# Quiet, with a line before and after: setuptools' notices about editable
# installs (PYTHONWARNINGS=ignore) are for package maintainers, not learners.
$(STAMP): pyproject.toml
	@echo "minildr: installing the course into $(VENV)/ (first run only; a few minutes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --progress-bar on -e '.[dev]'
	@$(BIN)/python -m minildr.course.golang install-toolchains
	@$(BIN)/python -c 'from minildr.isolation.fastcall import main; main()'
	@touch $@
	@echo "minildr: $(VENV)/ is ready."

# The extra Go toolchains notebook 09 builds plugins with (1.26.6, 1.27.2),
# installed into the environment once (the first `make` does it; a hub image
# runs it when it is built), so that no notebook ever downloads a toolchain.
# Also for conda:
#   python -m minildr.course.golang install-toolchains
go-toolchains: $(STAMP)
	$(BIN)/python -m minildr.course.golang install-toolchains

# LAB_ARGS: extra JupyterLab options (the browser test sets port and token).
# The whole course is served (notebooks/, exercises/, solutions/), and the
# browser opens on notebook 00.
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(ALLOW_ROOT) \
		--LabApp.default_url=/lab/tree/notebooks/00-the-plugin-problem.ipynb $(LAB_ARGS)

# --nbval-current-env: run notebooks with this .venv's Python, not whatever
# "python3" kernel happens to be installed on the machine.
# -n: tests run in parallel worker processes (pytest-xdist); --dist loadfile
# keeps each file (and each notebook's cells, in order) in one worker. A
# worker waiting on its compiler or kernel keeps a core busy all the same,
# and each worker costs 8-12 CPU seconds to start (it collects every test
# itself: `make test-profile` shows it as <collect>), so on 2 cores 3 workers:
# one more than the cores, for the tests that sleep or wait for a timeout.
# --no-loadscope-reorder: files go to workers in collection order, where
# tests/conftest.py puts the slowest first (xdist's own order puts the files
# with the most tests first, and the long ones with few tests ran last, alone).
# -m "not cross": what runs a cross toolchain or an emulator is `make cross-test`.
# PYTHONDONTWRITEBYTECODE emptied (= unset, for Python): with it set in the shell,
# every Python process of the run compiles the test files again (and pytest
# rewrites their asserts again) instead of reading __pycache__/ (git-ignored):
# about 5 CPU s per xdist worker's collection alone.
TEST_WORKERS ?= 3
test: export PYTHONDONTWRITEBYTECODE =
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks solutions --nbval --nbval-current-env \
		--nbval-sanitize-with tests/sanitize.cfg --ignore=tests/browser --ignore=tests/site --ignore=tests/hub \
		-m "not cross" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The tests marked `cross`: AArch64 code run under qemu-aarch64
# (tests/native/test_native_aarch64.py: one emulated child, about a minute of
# both cores), the Windows and macOS plugins rebuilt by the cross toolchains and
# the DLLs loaded under Wine (tests/formats/test_crossbuild.py). They need
# `make cross-tools` (without it they skip and say why; with
# MINILDR_REQUIRE_CROSS=1 the AArch64 ones fail instead). CI runs this right
# after `make test`.
cross-test: $(STAMP)
	$(BIN)/python -m pytest -m cross tests --ignore=tests/browser --ignore=tests/site \
		--ignore=tests/hub -p no:cacheprovider $(PYTEST_ARGS)

# Where make test's time goes: the same run, with the CPU seconds of every
# test (and what it started) written to build/test-cpu/, then summed per file
# (tests/cpu_profile.py). CPU, not wall: other jobs on the machine share its
# cores; CPU seconds / cores is the shortest the run can take here.
test-profile: $(STAMP)
	rm -rf build/test-cpu
	MINILDR_TEST_CPU=build/test-cpu $(MAKE) test; status=$$?; \
		$(BIN)/python tests/cpu_profile.py build/test-cpu; exit $$status

# The isolation tests again with each worker started as its own Python, as on
# macOS or with MINILDR_NO_FORK_SERVER=1 (minildr/isolation/forkserver.py): make
# test runs them through the fork server, so the direct start would otherwise be
# left to the few tests that ask for it. CI runs this after make fuzz.
test-direct-start: $(STAMP)
	MINILDR_NO_FORK_SERVER=1 $(BIN)/python -m pytest tests/isolation tests/core/test_interrupts.py \
		-n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider $(PYTEST_ARGS)

# The fuzzers with long budgets (make test runs each with a short one). The browser,
# site and hub folders hold no fuzzer; left out, they are not collected (on a machine
# without Chromium yet they would each report a skip).
# MINILDR_FUZZ_SCALE multiplies every fuzzer's number of examples.
FUZZ_SCALE ?= 20
fuzz: $(STAMP)
	MINILDR_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest -m fuzz tests \
		--ignore=tests/browser --ignore=tests/site --ignore=tests/hub \
		-n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider $(PYTEST_ARGS)

# The differential fuzzer alone (the native loader against glibc on mutated
# plugins) with the long budget; `make fuzz` runs it too. At scale 20 (seed 24)
# it once found 8 of 1,600 mutants that glibc loads crashing the native loader
# (.eh_frame in a segment without PF_R: issue 24); those classes are regression
# tests in tests/native/test_native_differential.py. MINILDR_FUZZ_SEED picks
# another seed.
fuzz-differential: $(STAMP)
	MINILDR_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest -m differential tests \
		-p no:cacheprovider $(PYTEST_ARGS)

# The course as a person uses it: `make lab` serving notebook 02 to headless
# Chromium, which runs every cell; needs Debian's chromium and chromedriver
# (installed here if missing, as root). The screenshot lands in build/browser/.
browser-test: $(STAMP) chromium
	$(BIN)/python -m pytest tests/browser -p no:cacheprovider

# Debian's chromium and chromedriver (installed if missing, as root): the
# browser tests drive them, and mermaid-cli draws the site's diagrams in them.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Node and npm (Debian's, if missing, as root), then the site's npm tools
# (mermaid-cli, the Dev Containers CLI) at the versions of
# tools/site/package-lock.json, into build/site-node/. Puppeteer is told not
# to download a browser: it uses Debian's chromium.
SITE_NODE := build/site-node
$(SITE_NODE)/.installed-stamp: tools/site/package.json tools/site/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq nodejs npm >/dev/null; }
	@mkdir -p $(SITE_NODE)
	@cp tools/site/package.json tools/site/package-lock.json $(SITE_NODE)/
	cd $(SITE_NODE) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
node: $(SITE_NODE)/.installed-stamp

# The site's Python tools (Sphinx, myst-nb, the book theme: the `site` extra).
SITE_STAMP := $(VENV)/.site-stamp
$(SITE_STAMP): $(STAMP)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev,site]'
	@touch $@

# The course as a static website in build/site/, from the committed outputs
# (nothing runs): tools/site/. SITE_REPOSITORY=owner/name sets where its
# Binder links point (default: the git remote, else OWNER/minildr).
site: $(SITE_STAMP) node chromium
	$(BIN)/python -m tools.site $(if $(SITE_REPOSITORY),--repository $(SITE_REPOSITORY))

# The site as a reader meets it: every page in headless Chromium (no console
# error, no failed request, every image drawn), screenshots in
# build/site-screens/; and the dev container's configuration read by the
# Dev Containers CLI.
site-test: site
	$(BIN)/python -m pytest tests/site -p no:cacheprovider

# The course as a hub serves it: what a JupyterHub image runs once, then a
# real hub on loopback with three students (tests/hub/). HUB_VENV is the
# students' shared, read-only environment: minildr installed NON-editable
# (students import it from there, never from their clone), JupyterHub,
# nbgitpuller, and the older Go toolchain notebook 08 needs, so that nothing
# is downloaded while a class runs. Reinstalled when the package changes.
HUB_VENV  ?= /opt/minildr-venv
# A Python every student's uid can run (pyenv's or conda's under /root cannot be).
HUB_PYTHON ?= /usr/bin/python3
HUB_STAMP := $(HUB_VENV)/.minildr-installed-stamp
PACKAGE_FILES := pyproject.toml $(shell find minildr -type f -not -path '*/__pycache__/*' 2>/dev/null)
CHP := $(HUB_VENV)/share/configurable-http-proxy/node_modules/.bin/configurable-http-proxy

$(HUB_STAMP): $(PACKAGE_FILES) Makefile
	@echo "minildr: building the hub environment in $(HUB_VENV)/ ..."
	@$(HUB_PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(HUB_VENV)/bin/python || $(HUB_PYTHON) -m venv $(HUB_VENV)
	@$(HUB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@# setuptools stages the package in build/lib and never empties it: a module
	@# deleted or moved since the last build would be installed too.
	@rm -rf build/lib
	@PYTHONWARNINGS=ignore $(HUB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[dev,hub]'
	@PYTHONWARNINGS=ignore $(HUB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall .
	@$(HUB_VENV)/bin/python -m minildr.course.golang install-toolchains
	@chmod -R go-w,a+rX $(HUB_VENV)
	@touch $@

# JupyterHub's proxy comes from npm (Debian's nodejs and npm, installed if missing, as root).
$(CHP):
	command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq nodejs npm >/dev/null; }
	npm install --silent --no-audit --no-fund --prefix $(HUB_VENV)/share/configurable-http-proxy \
		configurable-http-proxy

hub-env: $(HUB_STAMP) $(CHP)

# Needs root: it creates three OS users (and removes them afterwards).
hub-test: $(STAMP) hub-env
	HUB_VENV=$(HUB_VENV) CHP=$(CHP) $(BIN)/python -m pytest tests/hub -p no:cacheprovider $(PYTEST_ARGS)

# The cross toolchains tests/formats/test_crossbuild.py rebuilds the Windows and macOS
# fixtures with, and wine, which loads the DLLs (Debian packages, installed if
# missing, as root; about 1.2 GB), and g++, which builds the C++ plugin of
# tests/native/test_native_cxx.py. Then the AArch64 harness of
# tests/native/test_native_aarch64.py: qemu-user and gcc-aarch64-linux-gnu with
# libc6-dev-arm64-cross (the cross linker's crti.o and libc: gcc-aarch64-linux-gnu
# only recommends it, and --no-install-recommends leaves it out), and an
# arm64 Debian Python with cffi unpacked into build/aarch64-sysroot
# (tools/aarch64-sysroot.sh: adds arm64 to dpkg's architectures, downloads ~25 MB of
# .debs, installs nothing of arm64 into the system). Without them those tests skip
# and say why (.ci/run sets MINILDR_REQUIRE_CROSS=1: there they must run).
CROSS_PACKAGES := gcc-mingw-w64-x86-64 clang lld llvm wine64 g++ qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
cross-tools:
	@missing=$$(for p in $(CROSS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "cross-tools: installing" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@if [ "$$(uname -m)" = x86_64 ]; then tools/aarch64-sysroot.sh build/aarch64-sysroot; fi

# Regenerate exercises/ from solutions/ (after editing a solution notebook).
exercises: $(STAMP)
	$(BIN)/python -m minildr.course.exercises

# A learner's progress: run my exercise notebooks, show which tasks are done.
# Where the course is already installed (a JupyterHub image, Binder: python3
# imports minildr) that installation is used, instead of building a private
# .venv in the student's home. EXERCISES=folder checks another folder.
EXERCISES ?= exercises
HUB_CHECK_PYTHON = $(if $(wildcard $(STAMP)),,$(shell cd / && python3 -c 'import minildr.course.selfcheck, sys; print(sys.executable)' 2>/dev/null))
check: $(if $(HUB_CHECK_PYTHON),,$(STAMP))
	@$(or $(HUB_CHECK_PYTHON),$(BIN)/python) -m minildr.course.selfcheck $(EXERCISES)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_native.py
	$(BIN)/python benchmarks/bench_contract.py
	$(BIN)/python benchmarks/bench_isolate.py
	$(BIN)/python benchmarks/bench_boundaries.py --plot --save

clean:
	rm -rf $(VENV) build/site build/site-src build/site-doctrees build/site-cache build/site-node build/site-screens notebooks/build solutions/build exercises/build build/go-cache build/go-tests .pytest_cache
