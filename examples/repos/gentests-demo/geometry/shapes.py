def area(width: int, height: int) -> int:
    """Area of a width × height rectangle."""
    return width * height


def perimeter(width: int, height: int) -> int:
    """Perimeter of a width × height rectangle."""
    return 2 * (width + height)


def clamp(value: int, low: int, high: int) -> int:
    """``value`` limited to the range between ``low`` and ``high`` (in either order)."""
    if low > high:
        low, high = high, low
    return max(low, min(value, high))


def ratio(part: float, whole: float) -> float:
    """``part`` as a fraction of ``whole``."""
    return part / whole


def _scale(value: int) -> int:
    return value * 10
