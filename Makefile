# The two commands a newcomer needs: `make demo` and `make test`. Both bootstrap .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
PYTHON    ?= python3
ENV       ?= dev
# `make deploy ENV=prod REGION=eu-west-1`: the governance Region (samconfig.toml's `region` otherwise).
REGION    ?=
# More `sam deploy` options, e.g. DEPLOY_ARGS='--parameter-overrides Stage=prod ...' (docs/rollout.md).
DEPLOY_ARGS ?=
TEMPLATES := template.yaml templates/member-account.yaml templates/management-account.yaml
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# sam build needs the Lambda runtime's interpreter, python3.13: on PATH, or through pyenv.
# Not inside .venv: its pyvenv.cfg would make the linked python3.13 think it is the 3.11 venv.
PY313_DIR := .py313/bin
# A pyenv shim answers `command -v python3.13` even when it cannot run 3.13, so each candidate must run.
# The interpreter is linked by its real path: with $(PY313_DIR) itself on PATH, the link would else point
# at itself.
PY313 := $(shell for c in "$$(command -v python3.13)" \
	"$$(pyenv root 2>/dev/null)/versions/$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.|$$)' | tail -n 1)/bin/python3.13"; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { readlink -f "$$c"; break; }; done)

# checkov pins packages the SAM CLI pins differently: it gets its own virtual environment.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_TEMPLATES := template.yaml $(wildcard templates/*.yaml)

.PHONY: help demo test lint checkov build deploy bench clean venv python313

help:
	@echo "make demo     run the backbone offline on its embedded AWS emulation and show what it does"
	@echo "make test     lint, type-check, validate and build the templates, run the whole test suite"
	@echo "make lint     ruff, mypy, cfn-lint and sam validate --lint on every template"
	@echo "make checkov  the checkov security scan of every template (its own venv, .venv-checkov)"
	@echo "make build    sam build (needs python3.13)"
	@echo "make deploy   sam build + sam deploy --config-env \$$ENV (dev|prod) [--region \$$REGION] \$$DEPLOY_ARGS"
	@echo "              (needs AWS credentials)"
	@echo "make bench    the performance benchmark; writes bench/latest.json"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	@echo "installing the project and its development tools into $(VENV) (first run: a few minutes)"
	@set -o pipefail; $(PY) -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v -e "is ignored" -e "^\s*$$" || true; }
	@touch $(STAMP)

python313: $(STAMP)
	@if [ -z "$(PY313)" ]; then \
	  echo "error: sam build needs a python3.13 interpreter (the Lambda runtime) and none was found;" >&2; \
	  echo "       install Python 3.13 (e.g. 'pyenv install 3.13') and run make again." >&2; exit 1; fi
	@mkdir -p $(PY313_DIR) && ln -sf "$(PY313)" $(PY313_DIR)/python3.13

demo: $(STAMP)
	$(VENV)/bin/govern demo

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint $(TEMPLATES)
	@for t in $(TEMPLATES); do $(VENV)/bin/sam validate --lint -t $$t || exit 1; done

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "installing checkov into $(CHECKOV_VENV) (first run: a minute)"
	@set -o pipefail; $(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt 2>&1 | \
	  { grep -v -e "is ignored" -e "^\s*$$" || true; }
	@touch $(CHECKOV_STAMP)

# Offline (--skip-download: no guideline download); any failed check fails the target. A suppression
# lives in the template, next to its resource, with its reason (Metadata: checkov: skip).
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  $(addprefix -f ,$(CHECKOV_TEMPLATES))

# One pytest worker per core, up to 4 (pytest-xdist), each taking whole test files: a module's fixtures,
# the real sam build among them, run once, in one worker. On two cores the suite takes about 6 minutes
# instead of 11. A plain `pytest` (one file while working, say) stays in one process.
PYTEST_WORKERS := -n auto --maxprocesses 4 --dist loadfile

test: lint checkov python313
	PATH="$(abspath $(PY313_DIR)):$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest $(PYTEST_WORKERS)

build: python313
	PATH="$(abspath $(PY313_DIR)):$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/sam build

deploy: build
	$(VENV)/bin/sam deploy --config-env $(ENV) $(if $(REGION),--region $(REGION)) $(DEPLOY_ARGS)

# The cold start is measured where Lambda starts a function: python3.13 with the runtime's SDK and nothing
# else (bench/lambda-runtime.txt), plus the layer as `sam build` builds it. Not in .venv (awscrt).
LAMBDA_VENV  := .venv-lambda
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed

$(LAMBDA_STAMP): bench/lambda-runtime.txt | python313
	@test -x $(LAMBDA_VENV)/bin/python || $(PY313) -m venv $(LAMBDA_VENV)
	@echo "installing the Lambda-like cold-start environment into $(LAMBDA_VENV)"
	@set -o pipefail; $(LAMBDA_VENV)/bin/python -m pip install --quiet -r bench/lambda-runtime.txt 2>&1 | \
	  { grep -v -e "is ignored" -e "^\s*$$" || true; }
	@touch $(LAMBDA_STAMP)

bench: $(STAMP) $(LAMBDA_STAMP)
	$(PY) -m bench --interpreter $(abspath $(LAMBDA_VENV))/bin/python $(BENCH_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
