"""airfsm's benchmarks: `make bench` runs them all (`python -m bench.run`).

Each figure group is one module with `measure(smoke: bool) -> list[Figure]` and a `main()`, so
`python -m bench.<module> [--smoke] [--json]` runs it alone. The module docstring says how its
figures are measured; `bench.run` copies it into docs/performance.md. Speed is measured here and
never asserted in tests: `tests/test_bench_smoke.py` only checks that every module still
produces well-formed rows at its `--smoke` size.
"""
