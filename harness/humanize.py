"""Quantities as short human-readable strings, for tables, plots and the command line."""

from __future__ import annotations

_UNITS = (("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30))


def human_bytes(n: float) -> str:
    """Bytes as a short human-readable string (B, KiB, MiB, GiB)."""
    for unit, scale in _UNITS:
        if abs(n) < 1024 * scale or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n / scale:.1f} {unit}"
    return str(n)


def human_seconds(t: float) -> str:
    """Seconds as a short human-readable string (s, ms, us, ns)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(t) >= scale:
            return f"{t / scale:.4g} {unit}"
    return f"{t / 1e-9:.4g} ns"


def human_budget(budget) -> str:
    """A budget as a fraction of peak live bytes ("0.5"), or "-" for a cell without a budget (None or NaN)."""
    if budget is None or budget != budget:  # NaN is the one value not equal to itself
        return "-"
    return f"{float(budget):g}"
