# Two commands on a fresh machine:  `make run`  and  `make test`.
PYTHON   ?= python3
VENV     ?= .venv
DATA_DIR ?= var/vault
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-stamp

.PHONY: run test lint bench proto clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e clients/python -e '.[dev]'
	touch $(STAMP)

## run: initialise $(DATA_DIR) when empty (keyring, dev TLS, policy, SQLite) and serve mTLS on 127.0.0.1:50051
run: $(STAMP)
	$(BIN)/pii-vault serve --init --data-dir $(DATA_DIR)

## test: the whole test suite (SQLite, and PostgreSQL when it is reachable), a process per core; each module stays in one process, so its server and database start once
test: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadscope

## lint: ruff, mypy --strict on the server and on the client distribution, and the layer contracts in .importlinter
lint: $(STAMP)
	$(BIN)/ruff check vault tests benchmarks clients scripts
	$(BIN)/mypy vault
	$(BIN)/mypy -p pii_vault_client
	$(BIN)/lint-imports

## bench: pytest-benchmark figures (ratios against raw baselines, same run); the peers of the bench extra
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/pytest benchmarks -p no:cacheprovider --benchmark-enable -q

## proto: regenerate from proto/ (buf generate, buf.gen.yaml): the Python stubs (clients/python/src/pii_vault_client/v1), the TypeScript code (clients/node/src/gen) and docs/api.md
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
