"""Money as whole cents (version 2.0.0: decimal rounding, half up)."""

from decimal import ROUND_HALF_UP, Decimal

__version__ = "2.0.0"


def to_cents(amount: float) -> int:
    """Amount in currency units to cents; halves round up, as people expect."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_cents(cents: int) -> str:
    """Cents as a currency amount with two decimals."""
    return f"{cents / 100:.2f}"
