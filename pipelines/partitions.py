"""Partitions, defined once: days by UTC event date."""

import dagster as dg

PARTITIONS_START = "2015-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
