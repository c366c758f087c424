# Two commands on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean-docker

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

bench: setup
	$(PY) bench/step_overhead.py

clean-docker:
	docker ps -aq --filter label=org.prefect-agentic.managed=true | xargs -r docker rm -f
