"""Benchmarks run by `make bench` (`python -m bench [name]`); figures go to docs/benchmarks.md.

Each benchmark measures its ceiling (the bare library on this machine) in the same run and
reports the ratio to it, because the machines are noisy (DESIGN §14).
"""
