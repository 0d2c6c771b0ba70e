# The two commands a newcomer types:
#   make lab    open the course in JupyterLab
#   make test   run every test (pytest over tests/ and nbval over notebooks/)
# Both create .venv and install the course into it the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# JupyterLab refuses to run as root (Docker, Binder, CI) unless told.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: lab test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

# --nbval-current-env: run notebooks with this .venv's Python, not whatever
# "python3" kernel happens to be installed on the machine.
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/sanitize.cfg

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_isolate.py

clean:
	rm -rf $(VENV) notebooks/build .pytest_cache
