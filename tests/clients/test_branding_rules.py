"""Branding rules: colour contrast and the custom email text's placeholders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.branding import (
    colour_warnings,
    contrast_ratio,
    email_text_render,
    email_text_unknown_placeholders,
)
from clients.models import DEFAULT_EMAIL_TEXT

VALUES = {
    "first_name": "Alex",
    "full_name": "Alex Morgan",
    "company_name": "Acme IT",
    "support_email": "desk@acme-it.example",
}

hex_colours = st.text(alphabet="0123456789abcdefABCDEF", min_size=6, max_size=6).map(
    lambda digits: "#" + digits
)


def test_black_on_white_is_the_highest_contrast() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)


@pytest.mark.parametrize("colour", ["#000000", "#ffffff", "#1d4ed8", "#ffff00"])
def test_a_colour_on_itself_has_no_contrast(colour: str) -> None:
    assert contrast_ratio(colour, colour) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("first", "second", "ratio"),
    [
        # #767676 is the lightest grey that passes AA on white; #777777 just fails.
        ("#767676", "#ffffff", 4.54),
        ("#777777", "#ffffff", 4.48),
        ("#ffff00", "#ffffff", 1.07),
        ("#1D4ED8", "#FFFFFF", 6.70),
    ],
)
def test_contrast_of_known_pairs(first: str, second: str, ratio: float) -> None:
    assert contrast_ratio(first, second) == pytest.approx(ratio, abs=0.01)


@given(hex_colours, hex_colours)
def test_contrast_is_symmetric_and_between_1_and_21(first: str, second: str) -> None:
    ratio = contrast_ratio(first, second)
    assert ratio == contrast_ratio(second, first)
    assert 1.0 <= ratio <= 21.0 + 1e-9


def test_default_colours_read_well() -> None:
    assert colour_warnings(primary="#1d4ed8", accent="#0f766e") == []


def test_light_primary_is_warned_about() -> None:
    warnings = colour_warnings(primary="#ffff00", accent="#0f766e")
    assert warnings == [
        "White text on the primary colour #ffff00 has a contrast of 1.07:1, below the 4.5:1 "
        "that WCAG AA asks for. Buttons and headings will be hard to read: choose a darker "
        "primary colour."
    ]


def test_light_accent_is_warned_about() -> None:
    warnings = colour_warnings(primary="#1d4ed8", accent="#777777")
    assert len(warnings) == 1
    assert warnings[0].startswith("Links in the accent colour #777777 on white have a contrast "
                                  "of 4.47:1, below the 4.5:1")
    assert "choose a darker accent colour" in warnings[0]


def test_both_colours_too_light_give_two_warnings() -> None:
    warnings = colour_warnings(primary="#ffffff", accent="#eeeeee")
    assert len(warnings) == 2
    assert "primary colour #ffffff" in warnings[0]
    assert "accent colour #eeeeee" in warnings[1]


def test_colour_exactly_passing_aa_gives_no_warning() -> None:
    assert colour_warnings(primary="#767676", accent="#767676") == []


def test_email_text_placeholders_are_filled() -> None:
    text = "Hi {first_name} ({full_name}), {company_name} help: {support_email}."
    assert email_text_render(text, VALUES) == (
        "Hi Alex (Alex Morgan), Acme IT help: desk@acme-it.example."
    )


def test_default_email_text_renders_without_leftover_placeholders() -> None:
    rendered = email_text_render(DEFAULT_EMAIL_TEXT, VALUES)
    assert rendered.startswith("Hi Alex,\n\nAcme IT uses Blink")
    assert "{" not in rendered


def test_values_are_inserted_once() -> None:
    values = {**VALUES, "first_name": "{company_name}", "full_name": "{support_email}"}
    rendered = email_text_render("Hi {first_name} / {full_name} at {company_name}", values)
    assert rendered == "Hi {company_name} / {support_email} at Acme IT"


def test_unknown_placeholders_are_left_as_typed() -> None:
    rendered = email_text_render("Hi {first_name}, your {password} and {Company_Name}", VALUES)
    assert rendered == "Hi Alex, your {password} and {Company_Name}"


def test_known_placeholder_without_a_value_is_left_as_typed() -> None:
    assert email_text_render("Write to {support_email}", {"first_name": "Alex"}) == (
        "Write to {support_email}"
    )


def test_html_is_not_escaped_by_the_text_renderer() -> None:
    # Escaping belongs to the HTML template; the plain-text email must keep the characters.
    assert email_text_render("<b>{first_name}</b> & co", VALUES) == "<b>Alex</b> & co"


def test_unknown_placeholders_are_listed_once_in_order() -> None:
    text = "{password} {first_name} {token} {password} {FIRST_NAME} {support_email}"
    assert email_text_unknown_placeholders(text) == ["password", "token", "FIRST_NAME"]


@pytest.mark.parametrize(
    "text",
    [DEFAULT_EMAIL_TEXT, "No placeholders at all.", "Braces { alone } and {} and {1st}", ""],
)
def test_text_without_unknown_placeholders_passes(text: str) -> None:
    assert email_text_unknown_placeholders(text) == []
