"""Rewriting conditions for CEL: only real field references change, literals never do."""

from __future__ import annotations

import pytest

from streamrisk.rules.expr import ExpressionError, cel_literal, prepare


def test_fields_become_flat_variables_and_numbers_are_wrapped_in_double() -> None:
    p = prepare("user . payment_count_5m > 1.0 && payment.method == 'card'", {})
    assert p.cel_source == "double(user__payment_count_5m) > 1.0 && payment__method == 'card'"
    assert p.fields == (("user", "payment_count_5m"), ("payment", "method"))


def test_params_are_inlined_as_literals() -> None:
    params = {"limit": cel_literal(10), "names": cel_literal(["a'b", 'c"d'])}
    p = prepare("params.limit < 3.5 && 'x' in params.names", params)
    assert p.cel_source == "10.0 < 3.5 && 'x' in [\"a'b\", \"c\\\"d\"]"
    assert p.fields == ()


@pytest.mark.parametrize(
    "literal",
    ["'user.new_device'", '"user.new_device"', "r'user.new_device\\'", "'''user.new_device'''",
     '"""a\nuser.new_device"""', "b'user.new_device'"],
)
def test_string_literals_are_never_rewritten(literal: str) -> None:
    assert prepare(f"{literal} == x", {}).cel_source == f"{literal} == x"


def test_selection_on_another_value_is_not_a_field_reference() -> None:
    assert prepare("x.user.new_device", {}).cel_source == "x.user.new_device"


def test_unterminated_string_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="unterminated"):
        prepare("payment.method == 'card", {})
