"""The deterministic exchange engine: pure, integer, numba-accelerated."""
