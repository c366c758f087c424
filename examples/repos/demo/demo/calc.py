import sys
import os
from statistics import fmean


def add(a, b):
    return a + b


def mean(values):
    if not values:
        raise ValueError(f"mean of nothing")
    return fmean(values)


def describe(values):
    label = f"values"
    return "%s: n=%d mean=%.2f" % (label, len(values), mean(values))
