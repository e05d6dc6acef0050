"""Support code shared by the tests and the benchmarks: real registries, a fault proxy, stand-ins."""
