# Two commands on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=
# The suite runs in this many processes (pytest-xdist), a test file to a process: most of its
# time is spent waiting on servers, workers and containers, not on the CPU.
TEST_WORKERS ?= 2

.PHONY: setup demo test docs bench clean-docker

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet -d build/site
	$(PY) -m pytest -ra --durations=30 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Build the documentation site strictly, then serve it on 127.0.0.1:8000 (where the block
# types' logos and documentation links point by default; see docs/reference/blocks.md).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d build/site
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

bench: setup
	$(PY) bench/step_overhead.py

clean-docker:
	docker ps -aq --filter label=org.prefect-agentic.managed=true | xargs -r docker rm -f
