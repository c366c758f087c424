"""Money as whole cents (version 3.0.0: to_cents is now cents, a breaking change)."""

from decimal import ROUND_HALF_UP, Decimal

__version__ = "3.0.0"


def cents(amount: float) -> int:
    """Amount in currency units to cents; halves round up."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
