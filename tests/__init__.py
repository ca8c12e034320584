"""r1's tests, a package so that they and the benchmarks import their helpers as `tests.support.*`."""
