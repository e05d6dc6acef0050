"""Benchmarks of the pack publisher (run with `invoke bench`)."""
