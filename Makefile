# The two commands of the README: `make demo` runs the main job, `make test` the tests.
# Both install missing Debian packages first. Tests run in release mode: the numeric
# tests loop over real data and debug Swift is 10-100x slower in loops.

.PHONY: demo test deps bench

deps:
	@scripts/install-deps.sh

demo: deps
	swift build -c release --product distill
	.build/release/distill demo

test: deps
	@scripts/install-deps.sh --test-oracles
	swift build -c release --build-tests
	swift test -c release --skip-build
	swift run -c release DistillBench --smoke

bench: deps
	swift build -c release --product DistillBench
	python3 bench/peers/run_side_by_side.py --repeats 5 --extras
