# One entry point for people and CI. `make demo` deploys to a local container
# host; `make test` installs everything it needs and runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Debian's own Python builds every virtualenv: built with PGO and LTO, it runs
# Ansible, Molecule and testinfra about a fifth faster than an unoptimised
# python3 that may come first on PATH (pyenv's, on the CI machine). The stamp
# names it, so that a virtualenv made from another Python is rebuilt.
HOST_PYTHON := /usr/bin/python3
STAMP := .installed-system-python
VENV := $(CURDIR)/.venv
APP_VENV := $(CURDIR)/.venv-app
BUILD := $(CURDIR)/build
# Python package name the demo and the tests render app_template with.
PROJECT_NAME ?= demoapi
# Debian releases the target images are built for.
DISTROS ?= bookworm trixie
# What `make test` runs, as scenario:release, in two chains that run side by
# side (molecule/_shared/run-scenarios.sh). `default` proves the stack on
# both releases (each of its tests that cannot depend on the release runs
# on one of them, the one its mark names; molecule/_shared/fixtures.py); the
# others each add one concern on one release, which keeps the suite well
# inside CI's time; multihost mixes both releases in one fleet (its
# molecule.yml names them). The two `default` runs, the longest,
# start first, one in each chain. A third chain (releases and acme, tried
# on 2026-12-06) slowed the others by more than it saved: releases took
# 1,175 s instead of 575, and default on Debian 13 1,408 instead of 988.
TEST_CHAIN_1 ?= default:bookworm releases:bookworm
TEST_CHAIN_2 ?= default:trixie multihost:bookworm acme:trixie
FLEET_SCENARIOS := multihost
SCENARIO ?= default
MOLECULE_DISTRO ?= bookworm

export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/molecule/_shared/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Extra CAs the target hosts must trust (for example a TLS-intercepting proxy
# in front of PyPI). Defaults to this machine's own trust store.
export EXTRA_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export PY_COLORS := 1
export ANSIBLE_FORCE_COLOR := 1

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
HOST_PACKAGES := podman runc debootstrap uidmap slirp4netns openssh-client \
	postgresql python3-venv rsync curl

.PHONY: help bootstrap host-packages images render lint app-test test \
	test-setup test-scenario demo demo-destroy bench locks clean

help:
	@echo "make demo            deploy the whole stack to a local container host"
	@echo "make demo-destroy    remove that host"
	@echo "make test            install what is needed, then lint and run every test"
	@echo "make test-scenario SCENARIO=name [MOLECULE_DISTRO=trixie]"
	@echo "make lint            yamllint, ansible-lint, the bench's requirements and the locks"
	@echo "make app-test        the Django app's own tests against PostgreSQL"
	@echo "make bench           rebuild the demo host and measure it (docs/benchmarks.md)"
	@echo "make locks           regenerate the hashed locks after editing a requirements .in"

## Set-up ---------------------------------------------------------------

bootstrap: host-packages $(VENV)/$(STAMP) $(APP_VENV)/$(STAMP)

host-packages:
	@missing=""; for p in $(HOST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/$(STAMP): requirements-dev.txt | host-packages
	$(HOST_PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --require-hashes -r requirements-dev.txt
	touch $@

$(APP_VENV)/$(STAMP): app_template/requirements/test.txt | host-packages
	$(HOST_PYTHON) -m venv --clear $(APP_VENV)
	$(APP_VENV)/bin/pip install -q --require-hashes -r app_template/requirements/test.txt
	touch $@

# Target images, rebuilt only when their build script changes. They build
# side by side, each waiting on the Debian mirror part of the time (88 s
# for both, against 108 s one after the other, on 2026-12-06); a failed
# build fails the target once both have ended.
images: host-packages
	@pids=""; for d in $(DISTROS); do molecule/_shared/build-image.sh $$d & pids="$$pids $$!"; done; \
	  status=0; for pid in $$pids; do wait $$pid || status=1; done; exit $$status

# Render app_template the way a user starts a project; the deploy ships this.
render: $(APP_VENV)/$(STAMP)
	rm -rf $(BUILD)/app
	mkdir -p $(BUILD)/app
	$(APP_VENV)/bin/django-admin startproject --template=app_template $(PROJECT_NAME) $(BUILD)/app

## Locks ----------------------------------------------------------------

# Every list of Python packages whose hashed lock (.txt beside it) `make`
# installs; lint fails when a lock no longer satisfies its list. base.in
# comes before test.in, which is constrained by base.txt.
LOCKED_LISTS := requirements-dev.in bench/requirements.in \
	app_template/requirements/base.in app_template/requirements/test.in
LOCK_VENV := $(BUILD)/pip-tools

# After editing a .in: regenerate the locks. pip-compile keeps every pin
# a list still allows, so only what the edit needs moves; delete a lock
# first to take every package's newest release.
locks: | host-packages
	[ -x $(LOCK_VENV)/bin/pip-compile ] || { $(HOST_PYTHON) -m venv --clear $(LOCK_VENV) \
	  && $(LOCK_VENV)/bin/pip install -q pip-tools==7.7.0; }
	@for list in $(LOCKED_LISTS); do \
	  echo "locking $$list"; \
	  (cd "$$(dirname $$list)" && $(LOCK_VENV)/bin/pip-compile -q --allow-unsafe --generate-hashes \
	    --no-emit-find-links --no-emit-index-url --strip-extras "$$(basename $$list)") || exit 1; \
	done

## Checks ---------------------------------------------------------------

lint: $(VENV)/$(STAMP)
	yamllint --strict .
	ansible-lint --profile production
	python bench/check_requirements.py
	python .ci/check_locks.py $(LOCKED_LISTS)

# The app's tests need a PostgreSQL they may create test databases in: this
# machine's own cluster, with a role made for the purpose.
app-test: host-packages $(APP_VENV)/$(STAMP)
	@cluster="$$(pg_lsclusters --no-header | awk 'NR==1 {print $$1" "$$2}')"; \
	  $(SUDO) pg_ctlcluster $$cluster start 2>/dev/null || true
	$(SUDO) runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c \
	  "DO \$$\$$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_test') THEN CREATE ROLE app_test LOGIN CREATEDB PASSWORD 'app_test'; END IF; END\$$\$$;"
	rm -rf $(BUILD)/app-test
	mkdir -p $(BUILD)/app-test
	$(APP_VENV)/bin/django-admin startproject --template=app_template $(PROJECT_NAME) $(BUILD)/app-test
	cd $(BUILD)/app-test && DJANGO_DB_HOST=localhost DJANGO_DB_NAME=app_test \
	  DJANGO_DB_USER=app_test DJANGO_DB_PASSWORD=app_test $(APP_VENV)/bin/pytest -q

# The set-up steps run side by side: the image builds wait mostly on the
# Debian mirror, the virtualenvs on PyPI, lint and the app's tests on the
# CPU. Each step's output is printed whole when it ends. A failed step
# fails the run before any scenario starts.
test:
	$(MAKE) --no-print-directory -j4 --output-sync=target test-setup
	molecule/_shared/run-scenarios.sh "$(TEST_CHAIN_1)" "$(TEST_CHAIN_2)"

test-setup: bootstrap images lint app-test render

test-scenario: bootstrap render
	@for d in $(sort $(MOLECULE_DISTRO) $(if $(filter $(SCENARIO),$(FLEET_SCENARIOS)),$(DISTROS))); do \
	  molecule/_shared/build-image.sh $$d; \
	done
	MOLECULE_DISTRO=$(MOLECULE_DISTRO) molecule test -s $(SCENARIO)

## Demo -----------------------------------------------------------------

demo: bootstrap render
	molecule/_shared/build-image.sh bookworm
	molecule/_shared/demo.sh up

demo-destroy:
	molecule/_shared/demo.sh down

## Benchmarks -----------------------------------------------------------

BENCH_VENV := $(CURDIR)/.venv-bench

$(BENCH_VENV)/$(STAMP): bench/requirements.txt | host-packages
	$(HOST_PYTHON) -m venv --clear $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --require-hashes -r bench/requirements.txt
	touch $@

# Rebuilds the demo host from scratch (the cold deploy is one of the
# measurements), then writes docs/benchmarks.md and docs/benchmarks.png.
bench: bootstrap render $(BENCH_VENV)/$(STAMP)
	molecule/_shared/build-image.sh bookworm
	$(BENCH_VENV)/bin/python bench/run.py

clean: demo-destroy
	rm -rf $(BUILD)
