"""Dagster assets, one module per stage. Thin: read inputs, call mtashift functions, write, report."""
