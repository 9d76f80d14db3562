# The two commands: `make up` and `make test`. Everything else is a helper.
PY := .venv/bin/python
STACK := PYTHONPATH=$(CURDIR) $(PY) -m stack

.PHONY: up test down status logs clean bootstrap unit bench compose-up compose-down
# `make test` also builds and smoke-tests docker-compose.yml (minutes on a first
# build); `make test EXCHANGE_COMPOSE_TEST=0` skips that.
EXCHANGE_COMPOSE_TEST ?= 1
# EXCHANGE_ZONES_TEST=1 adds the three-zones drill after the suite:
# `scripts/zones.sh drill` deploys the zones, cuts the PostgreSQL leader's
# zone under order load, kills the active engine's matching process and
# removes the zones (about 20 minutes; .ci/run turns it on).
EXCHANGE_ZONES_TEST ?= 0

bootstrap:
	@bash scripts/bootstrap.sh

## Install, start the whole stack, print the components and their addresses.
up: bootstrap
	@$(STACK) up

## Install, start what the tests need, run the whole suite.
test: bootstrap
	@$(STACK) up
	@EXCHANGE_COMPOSE_TEST=$(EXCHANGE_COMPOSE_TEST) PYTHONPATH=$(CURDIR) $(PY) -m pytest
	@if [ "$(EXCHANGE_ZONES_TEST)" = 1 ]; then bash scripts/zones.sh drill; fi

## Unit tests only (no servers).
unit: bootstrap
	@PYTHONPATH=$(CURDIR) $(PY) -m pytest tests/unit

down:
	@$(STACK) down

## The compose stack on a private dockerd (installs Docker): README "Three ways to run it".
compose-up: bootstrap
	@$(STACK).compose daemon && $(STACK).compose base && $(STACK).compose build && $(STACK).compose up

compose-down:
	@$(STACK).compose down; $(STACK).compose stop

status:
	@$(STACK) status

## `make logs ORDER=<id>`: one order's JSON log lines from every process, in time order.
logs:
	@$(STACK) logs $(if $(ORDER),--order $(ORDER),)

clean:
	@if [ -x $(PY) ]; then $(STACK) clean; else rm -rf run; fi
