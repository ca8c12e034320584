"""What the tests and the benchmarks share: tiny models to load, fake servers on loopback (the Hub,
Ollama's registry, remote engines), other tools' stores, real daemons and runners to start, and
clients for them. Imported as `tests.support.<module>`; the fixtures that use them are in conftest.py."""
