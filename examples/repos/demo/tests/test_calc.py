import pytest

from demo.calc import add, describe, mean


def test_add():
    assert add(2, 3) == 5


def test_mean():
    assert mean([1.0, 2.0, 3.0]) == 2.0


def test_mean_of_nothing():
    with pytest.raises(ValueError):
        mean([])


def test_describe():
    assert describe([1.0, 3.0]) == "values: n=2 mean=2.00"
