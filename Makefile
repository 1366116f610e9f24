# `make demo`: set up and distill + evaluate the built-in digits dataset. `make test`: set up and run the tests.
.PHONY: setup demo test test-slow

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/dreamdd distill --dataset digits --ipc 10

test: setup
	.venv/bin/python -m pytest -q

test-slow: setup
	.venv/bin/python -m pytest -q -m slow
