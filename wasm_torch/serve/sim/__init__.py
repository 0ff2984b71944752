"""Simulations and fault injection used by benchmarks and tests; the server never runs them."""
