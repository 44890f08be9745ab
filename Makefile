# whalescan — `make demo` and `make test` set everything up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

# Reinstall only when the project's requirements change.
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,openvino]'
	touch $(STAMP)

demo: install
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m jobs.demo --out demo-out

test: install
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: install
	$(BIN)/python -m bench.run_all

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf demo-out out .pytest_cache .hypothesis
