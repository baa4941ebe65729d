"""The deterministic exchange engine: pure, integer, numba-accelerated."""

from engine import compile_cache

compile_cache.configure()
