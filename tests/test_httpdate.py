"""The Date field's value: RFC 9110's IMF-fixdate, formatted once per second."""

from h2proxy.httpdate import DateField


def test_the_value_is_an_imf_fixdate_of_the_clock():
    assert DateField(clock=lambda: 784111777.9).value() == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_the_text_is_kept_for_its_second_and_renewed_after_it():
    now = [784111777.1]
    dates = DateField(clock=lambda: now[0])
    first = dates.value()
    now[0] = 784111777.8
    assert dates.value() is first
    now[0] = 784111778.0
    assert dates.value() == b"Sun, 06 Nov 1994 08:49:38 GMT"
