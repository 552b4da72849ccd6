"""Benchmarks of dra-kwok-driver: cluster scenarios against a ceiling (`python -m benchmarks`,
`make bench`) and micro-benchmarks of the pure core (`benchmarks/micro`, `make bench-micro`)."""
