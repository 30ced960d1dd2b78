# Two entry points: `make demo` (the W2S rounds on the built-in corpus) and `make test`.
# Both create or reuse the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export DVC_NO_ANALYTICS ?= 1
export PREFECT_HOME ?= $(CURDIR)/.prefect

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip on some machines warns about missing local index folders; keep real errors visible.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: demo real test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vqa demo

# The same rounds on the real corpus (runs/ugc: ../shared/corpus/ugc-unlabelled, imported by DVC).
real: $(STAMP)
	$(BIN)/vqa demo --project runs/ugc

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Only what git ignores (the outputs): the committed metrics.json files stay.
clean:
	git clean -fdX -- artifacts .prefect mlflow.db mlartifacts mlruns runs/*/artifacts runs/*/mlflow.db runs/*/mlartifacts
