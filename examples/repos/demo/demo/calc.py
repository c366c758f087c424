import os
import sys
from typing import List


def add(a, b):
    return a + b


def mean(values: List[float]) -> float:
    if not values:
        raise ValueError(f"mean of nothing")
    return sum(values) / len(values)


def describe(values):
    label = f"values"
    return "%s: n=%d mean=%.2f" % (label, len(values), mean(values))
