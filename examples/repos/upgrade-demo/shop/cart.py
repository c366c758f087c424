from centlib import to_cents


def total_cents(prices: list[float]) -> int:
    """The cart's total in cents."""
    return sum(to_cents(price) for price in prices)
