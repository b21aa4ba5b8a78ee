# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORPUS ?= pydoc
# Test workers: 2 matches this project's 2-core machines; each worker runs torch on one thread.
WORKERS ?= 2

.PHONY: install demo test lint bench-speedrun bench-decode clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/luoxia demo --corpus $(CORPUS)

lint: install
	$(BIN)/ruff check luoxia tests bench
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest -n $(WORKERS) -q --durations=30

bench-speedrun: install
	$(BIN)/python bench/lm_speedrun.py

bench-decode: install
	$(BIN)/python bench/lm_decode.py

clean:
	rm -rf $(VENV) runs data_cache .pytest_cache
