# The README's two commands live here; the work is in scripts/.
.PHONY: run test lint bench demo
run:
	@bash scripts/run.sh

demo:
	@bash scripts/demo.sh

test:
	@bash scripts/test.sh $(ARGS)

lint:
	@.venv/bin/ruff check .
