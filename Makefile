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

# uv installs every Python package at the version uv.lock pins. The Makefile pip-installs
# uv when it is missing, and runs it as `python3 -m uv` if pip put it off PATH.
ifndef UV
UV := $(shell command -v uv 2>/dev/null || echo $(PYTHON) -m uv)
endif
# One requirements file per image (and the MXNet environment), exported from uv.lock.
REQUIREMENTS := operator runtime xgboost mxnet

define ensure-uv
@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv \
	|| $(PYTHON) -m pip install -q --user --break-system-packages uv
endef

# Re-synced whenever pyproject.toml or the lock changes. --locked: a pyproject.toml edited
# without `make lock` stops here instead of installing something the lock does not say.
$(VENV)/.installed: pyproject.toml uv.lock
	$(ensure-uv)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --locked --python $(PYTHON) --extra dev
	touch $@

.PHONY: venv
venv: $(VENV)/.installed  ## create .venv: the operator, local mode, XGBoost and the test tools, as uv.lock pins them

.PHONY: lock
lock:  ## re-resolve uv.lock after editing pyproject.toml's dependencies; re-export requirements/
	$(ensure-uv)
	$(UV) lock
	$(MAKE) requirements

.PHONY: requirements
requirements:  ## export requirements/<image>.txt from uv.lock (what the images and the MXNet env install)
	$(ensure-uv)
	@mkdir -p requirements
	@for extra in $(REQUIREMENTS); do \
		$(UV) export -q --frozen --no-emit-project --extra $$extra >requirements/$$extra.txt \
			|| exit 1; \
	done

.PHONY: lock-check
lock-check:  ## fail when uv.lock or requirements/ is stale against pyproject.toml
	$(ensure-uv)
	$(UV) lock --check
	@for extra in $(REQUIREMENTS); do \
		$(UV) export -q --frozen --no-emit-project --extra $$extra \
			| cmp -s - requirements/$$extra.txt \
			|| { echo "requirements/$$extra.txt is stale: run 'make requirements'" >&2; exit 1; }; \
	done

.PHONY: lowest-deps
lowest-deps:  ## unit, storage and serving tests against the oldest versions pyproject.toml allows
	$(ensure-uv)
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	$(UV) venv -q --python $(PYTHON) "$$tmp/venv" \
	&& VIRTUAL_ENV="$$tmp/venv" $(UV) pip install -q --resolution lowest-direct -e '.[dev]' \
	&& VIRTUAL_ENV="$$tmp/venv" $(UV) pip list --format freeze \
		| grep -iE '^(pydantic|kopf|kubernetes|prometheus-client|boto3|s3transfer|granian|orjson|numpy|xgboost|pyyaml)==' \
	&& "$$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit \
		tests/dataplane/test_storage.py tests/dataplane/test_serving.py tests/dataplane/test_xgboost_serve.py

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
	@# pytest exits 5 when it collected no tests (a collection filter or a broken conftest
	@# that matched nothing): that is a failure here, never a green run.
	@$(VENV_BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit code 5): failing" >&2; exit 1; \
	fi; \
	exit $$status

.PHONY: lint
lint: venv cluster-binaries lock-check  ## ruff, mypy (strict on the operator), helm lint, lock freshness
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

.PHONY: kind-node-image
kind-node-image:  ## build (or reuse) the kind node image of the e2e tests, offline (docs/e2e.md)
	scripts/kind-node-image.sh

.PHONY: docker-engine
docker-engine:  ## make a Docker engine answer here (installs Debian's docker.io as root where none does)
	scripts/docker-engine.sh

.PHONY: images
images:  ## build the four images from this checkout (each only when its inputs changed)
	scripts/images.sh
