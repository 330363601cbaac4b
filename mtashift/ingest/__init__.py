"""Ingest of landing files into canonical events: `pmta` (PowerMTA accounting CSV), `kumo` (KumoMTA
JSON logs), shared rules in `common`."""
