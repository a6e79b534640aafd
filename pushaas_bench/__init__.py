"""Benchmarks of the delivery path beside the raw ceilings of nginx + Nchan and Redis.

``python -m pushaas_bench`` (what ``make bench`` runs) starts every process it measures on
loopback, runs each benchmark with bounded sizes and time, and writes
``docs/benchmarks.md``, ``docs/benchmarks.json`` and the charts.
"""
