"""How numbers and untrusted text appear in reports (one place, so tests can compare exactly)."""

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

RATE_HINTS = ("rate", "share", "ratio_pct")


def is_rate_column(name: str) -> bool:
    n = name.lower()
    return any(h in n for h in RATE_HINTS) and not n.endswith(("_denominator", "_n", "_count"))


def fmt_value(value: Any, *, column: str = "") -> str:
    """Render one cell. Rates (columns named *rate*/*share*) as percentages with three decimals."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "—"
    if isinstance(value, (float, Decimal)) and is_rate_column(column):
        return f"{float(value) * 100:.3f}%"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (float, Decimal)):
        v = float(value)
        return f"{v:,.2f}" if abs(v) >= 100 else f"{v:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)
