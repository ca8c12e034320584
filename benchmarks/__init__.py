"""Measurements of r1 beside its peers, run from the repository root as `python -m benchmarks.<name>` so
that they import each other and the tests' helpers (`tests.support`) as packages."""
