# TradingStack operator. `make demo` and `make test` do their own set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
# checkov's own venv (hack/audit-requirements.txt): its pins stay out of the operator's.
AUDIT_VENV ?= .venv-audit
PY := $(VENV)/bin/python
CLUSTER ?= local
export KUBECONFIG ?= $(CURDIR)/.cluster/kubeconfig

.PHONY: venv audit-venv audit lint typecheck layers unit test rbac crds cluster cluster-down demo demo-down bench chaos run images kind-load e2e-kind prereqs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

$(AUDIT_VENV)/.installed: hack/audit-requirements.txt
	test -x $(AUDIT_VENV)/bin/python || python3 -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install -q -r hack/audit-requirements.txt
	touch $@

audit-venv: $(AUDIT_VENV)/.installed

audit: venv audit-venv ## kube-score and checkov on the rendered example and chart vs docs/security-accepted.yaml
	VENV=$(VENV) AUDIT_VENV=$(AUDIT_VENV) hack/audit.sh

prereqs: ## system packages and the cached control-plane binaries
	hack/install-prereqs.sh

lint: venv
	$(VENV)/bin/ruff check operator tests bench images hack
	$(VENV)/bin/ruff format --check operator tests bench images hack
	shellcheck hack/*.sh images/postgres/docker-entrypoint.sh
	# The scripts the Redis ConfigMap renders run under POSIX sh and source redis-lib.sh from their directory.
	shellcheck -s sh -x -P operator/tradingstack/render/redis_files operator/tradingstack/render/redis_files/*.sh
	# The pgBackRest sidecar and restore scripts (render/pitr.py fills in their @...@ commands).
	shellcheck -s sh operator/tradingstack/render/pgbackrest_files/*.sh

typecheck: venv
	$(VENV)/bin/mypy

layers: venv
	$(VENV)/bin/lint-imports

rbac: venv ## regenerate the chart's RBAC rules from the components
	$(PY) -m tradingstack.components.rbac --write charts/tradingstack-operator/templates/rbac.yaml

crds: venv ## regenerate the CRD from the pydantic models
	$(PY) -m tradingstack.api.crd --write crds/tradingstack.yaml charts/tradingstack-operator/crds/tradingstack.yaml
	$(PY) -m tradingstack.api.reference --write docs/reference.md

unit: venv
	$(PY) -m pytest tests/unit

test: venv audit-venv lint typecheck layers ## everything CI runs
	$(PY) -m pytest --durations=30

cluster: ## local control plane (kwok) or kind with CLUSTER=kind; kubeconfig in .cluster/kubeconfig
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

run: venv ## run the operator against the current kubeconfig
	$(VENV)/bin/tradingstack run --all-namespaces

demo: venv
	hack/demo.sh up

demo-down:
	hack/demo.sh down

chaos: venv ## the fault scenarios at size (CHAOS_KILLS, CHAOS_SPECS); writes docs/reliability.md
	$(PY) bench/reliability.py --kills $${CHAOS_KILLS:-50} --specs $${CHAOS_SPECS:-5000}

bench: venv ## writes docs/benchmarks.md
	$(PY) bench/run.py

images: ## build every image (cached by content) and import them into the running real nodes
	hack/images.sh build
	hack/images.sh load

kind-load:
	CLUSTER=kind hack/images.sh load

e2e-kind: venv
	CLUSTER=kind hack/cluster.sh up
	$(PY) -m pytest tests/e2e
