# Set-up and everyday commands. `make run` and `make test` install what is missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test test-faults bench lint format lock error-table clean

install: $(STAMP)

# Rebuilt when the pins change. requirements.lock pins every transitive package.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

system-deps:
	scripts/install_system_deps.sh

run: system-deps install
	$(BIN)/python scripts/run_local.py

test: system-deps install
	$(BIN)/python -m pytest -q -m "not faults"

# Slow fault-injection scenarios: workers killed mid-document, recovery by lease.
test-faults: system-deps install
	$(BIN)/python -m pytest -q -m faults -s tests/faults

# Benchmarks: OCRmyPDF and matplotlib live in a virtualenv of their own, so that
# their pins never constrain the application's.
BENCH_VENV := .bench-venv

$(BENCH_VENV)/.installed: requirements-bench.lock
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.lock
	touch $(BENCH_VENV)/.installed

bench: system-deps install $(BENCH_VENV)/.installed
	scripts/install_system_deps.sh hey ghostscript
	$(BIN)/python -m bench.run --ocrmypdf $(BENCH_VENV)/bin/ocrmypdf
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.load_faults
	$(BIN)/python -m bench.worker_memory
	$(BIN)/python -m bench.accuracy
	$(BENCH_VENV)/bin/python bench/plot.py docs/benchmarks.json docs/bench_workers.png
	$(BIN)/python -m bench.report docs/benchmarks.json > docs/benchmarks.md

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate requirements.lock from a fresh resolution of pyproject.toml.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip==25.3
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^pindai' > requirements.lock
	rm -rf .lock-venv

error-table: install
	$(BIN)/python scripts/error_table.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) data .pytest_cache .ruff_cache
