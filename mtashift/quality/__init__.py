"""Data quality: Great Expectations suites generated from the contracts, validation, drift frames, Data Docs."""
