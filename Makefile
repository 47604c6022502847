# kubemaker developer entry points. Every install step lives here or in the scripts it
# calls, so a clean checkout on a fresh machine needs nothing but Go, Python 3 and make.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(VENV)/bin
# Heavy, reusable builds (Go binaries, the MXNet environment) are cached outside the
# checkout so a fresh clone reuses them.
export KUBEMAKER_CACHE ?= $(HOME)/.cache/kubemaker

.PHONY: help
help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml
	@command -v uv >/dev/null || $(PYTHON) -m pip install -q uv
	uv venv -q --allow-existing --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install -q -e '.[dev,xgboost]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed  ## create .venv with the project and its test tools

.PHONY: demo
demo: venv  ## train the bank-marketing XGBoost model locally, serve it, predict once
	examples/xgboost-bank/demo.sh

.PHONY: mxnet-env
mxnet-env:  ## build (or reuse) the separate MXNet 1.9.1 environment
	scripts/mxnet-env.sh >/dev/null

.PHONY: datasets
datasets:  ## fetch and verify the offline datasets of the MXNet labs
	$(PYTHON) scripts/datasets.py

.PHONY: test
test: venv cluster-binaries mxnet-env datasets lint  ## lint, then the whole test suite (builds what it needs first)
	$(VENV_BIN)/python -m pytest

.PHONY: lint
lint: venv cluster-binaries  ## ruff, mypy (strict on the operator) and helm lint
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .
	$(VENV_BIN)/mypy operator/kubemaker
	"$$($(PYTHON) tests/cluster/localcluster.py bin helm)" lint --strict charts/kubemaker

.PHONY: cluster-binaries
cluster-binaries:  ## build (or reuse) the pinned control-plane binaries
	$(PYTHON) tests/cluster/localcluster.py build

.PHONY: cluster
cluster: cluster-binaries  ## start the local control plane; kubeconfig in .cluster/kubeconfig
	$(PYTHON) tests/cluster/localcluster.py up

.PHONY: cluster-down
cluster-down:  ## stop and delete the local control plane
	$(PYTHON) tests/cluster/localcluster.py down

.PHONY: e2e-kind
e2e-kind: venv  ## end to end with real containers in kind (needs a Docker engine)
	$(VENV_BIN)/python -m pytest tests/e2e -m e2e -v
