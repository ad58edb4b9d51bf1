# The README's two commands live here; the work is in scripts/.
.PHONY: run test lint bench
run:
	@bash scripts/run.sh

test:
	@bash scripts/test.sh $(ARGS)

lint:
	@.venv/bin/ruff check .
