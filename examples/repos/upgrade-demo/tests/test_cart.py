from shop.cart import total_cents


def test_total_of_an_empty_cart_is_zero():
    assert total_cents([]) == 0


def test_total_adds_the_prices_in_cents():
    assert total_cents([1.25, 2.5]) == 375
