"""Money as whole cents (version 1.0.0)."""

__version__ = "1.0.0"


def to_cents(amount: float) -> int:
    """Amount in currency units to cents, rounded to the nearest cent."""
    return int(round(amount * 100))
