# The two commands: `make up` and `make test`. Everything else is a helper.
PY := .venv/bin/python
STACK := PYTHONPATH=$(CURDIR) $(PY) -m stack

.PHONY: up test down status logs clean bootstrap unit bench

bootstrap:
	@bash scripts/bootstrap.sh

## Install, start the whole stack, print the components and their addresses.
up: bootstrap
	@$(STACK) up

## Install, start what the tests need, run the whole suite.
test: bootstrap
	@$(STACK) up
	@PYTHONPATH=$(CURDIR) $(PY) -m pytest

## Unit tests only (no servers).
unit: bootstrap
	@PYTHONPATH=$(CURDIR) $(PY) -m pytest tests/unit

down:
	@$(STACK) down

status:
	@$(STACK) status

## `make logs ORDER=<id>`: one order's JSON log lines from every process, in time order.
logs:
	@$(STACK) logs $(if $(ORDER),--order $(ORDER),)

clean:
	@if [ -x $(PY) ]; then $(STACK) clean; else rm -rf run; fi
