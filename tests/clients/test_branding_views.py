"""Branding pages: logo upload and serving, colours, email text, and the live preview."""

from __future__ import annotations

import html
import io
import os
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from PIL import Image

from blink.models import AuditEvent
from clients.branding import LOGO_MAX_BYTES
from clients.models import DEFAULT_EMAIL_TEXT, Branding, Company

URL = "/settings/branding/"
PREVIEW_URL = "/settings/branding/preview"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WCAG_WARNING = "below the 4.5:1 that WCAG AA asks for"

FORM = {
    "primary_colour": "#1d4ed8",
    "accent_colour": "#0f766e",
    "email_text": DEFAULT_EMAIL_TEXT,
}


def _image_bytes(fmt: str, size: tuple[int, int] = (64, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 60, 160)).save(out, format=fmt)
    return out.getvalue()


def _upload(data: bytes, name: str = "logo.png", content_type: str = "image/png") -> Any:
    return SimpleUploadedFile(name, data, content_type=content_type)


def _noise_png(size: tuple[int, int]) -> bytes:
    """A valid PNG that does not compress: random pixels."""
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, format="PNG")
    return out.getvalue()


def _branding(company: Company) -> Branding:
    return Branding.objects.get(company=company)


def _stored(company: Company) -> tuple[bytes, str, str, str]:
    fresh = _branding(company)
    return (bytes(fresh.logo), fresh.primary_colour, fresh.accent_colour, fresh.email_text)


def _page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


class _IframeSrcdoc(HTMLParser):
    """Reads the preview iframe's srcdoc as a browser would, entities decoded."""

    def __init__(self) -> None:
        super().__init__()
        self.srcdoc: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe" and dict(attrs).get("id") == "email-preview":
            self.srcdoc = dict(attrs).get("srcdoc")


def _preview_in_page(response: Any) -> str:
    parser = _IframeSrcdoc()
    parser.feed(response.content.decode())
    assert parser.srcdoc is not None, "the branding page has no preview iframe"
    return parser.srcdoc


# Who may do what


def test_every_member_sees_their_own_companys_branding(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    Branding.objects.filter(company=company).update(email_text="Greetings from the Acme desk.")
    name, browser = persona

    response = browser.get(URL)

    assert response.status_code == 200
    page = _page_text(response)
    if name == "outsider":
        assert "Rival MSP" in page
        assert "Acme IT" not in page
        assert "Greetings from the Acme desk." not in page
    else:
        assert "Acme IT" in page
        assert "Greetings from the Acme desk." in page
        assert "Rival MSP" not in page


def test_each_member_changes_branding_only_as_their_role_allows(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona
    acme_before = _stored(company)
    rival_before = _stored(other_company)

    response = browser.post(URL, {**FORM, "primary_colour": "#111111"})

    if name == "reader":
        assert response.status_code == 403
        assert _stored(company) == acme_before
    elif name == "outsider":
        assert response.status_code == 302
        assert _branding(other_company).primary_colour == "#111111"
        assert _stored(company) == acme_before
    else:
        assert response.status_code == 302
        assert _branding(company).primary_colour == "#111111"
        assert _stored(other_company) == rival_before


def test_read_only_member_cannot_upload_a_logo(
    login: Callable[..., HttpClient], reader: User, company: Company
) -> None:
    response = login(reader).post(URL, {**FORM, "logo": _upload(_image_bytes("PNG"))})
    assert response.status_code == 403
    assert not _branding(company).has_logo()


def test_anonymous_visitor_is_sent_to_sign_in(client: HttpClient, company: Company) -> None:
    before = _stored(company)
    for response in (client.get(URL), client.post(URL, FORM), client.post(PREVIEW_URL, FORM)):
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=/settings/branding/")
    assert _stored(company) == before


# Logo


@pytest.mark.parametrize(
    ("fmt", "name", "content_type"),
    [("PNG", "logo.png", "image/png"), ("JPEG", "logo.jpg", "image/jpeg"),
     ("WEBP", "logo.webp", "image/webp")],
)
def test_logo_is_stored_re_encoded_as_png(
    login: Callable[..., HttpClient], owner: User, company: Company,
    fmt: str, name: str, content_type: str,
) -> None:
    upload = _upload(_image_bytes(fmt), name=name, content_type=content_type)

    response = login(owner).post(URL, {**FORM, "logo": upload}, follow=True)

    assert "Branding saved." in _page_text(response)
    branding = _branding(company)
    stored = bytes(branding.logo)
    assert stored.startswith(PNG_SIGNATURE)
    assert branding.logo_content_type == "image/png"
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "PNG"
        assert image.size == (64, 32)


def test_large_logo_is_scaled_to_fit_512_square(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    login(owner).post(URL, {**FORM, "logo": _upload(_image_bytes("PNG", size=(2000, 1000)))})

    with Image.open(io.BytesIO(bytes(_branding(company).logo))) as image:
        assert image.size == (512, 256)


def test_logo_is_served_publicly_with_long_cache(
    login: Callable[..., HttpClient], owner: User, company: Company, client: HttpClient
) -> None:
    login(owner).post(URL, {**FORM, "logo": _upload(_image_bytes("JPEG"), name="logo.jpg")})
    branding = _branding(company)

    response = client.get(branding.logo_url())

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content == bytes(branding.logo)
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert directives == {"public", "max-age=31536000", "immutable"}


def test_logo_url_with_wrong_version_or_company_is_not_found(
    login: Callable[..., HttpClient], owner: User, company: Company, other_company: Company,
    client: HttpClient,
) -> None:
    login(owner).post(URL, {**FORM, "logo": _upload(_image_bytes("PNG"))})
    version = _branding(company).logo_version()

    assert client.get(f"/brand/{company.pk}/logo-000000000000.png").status_code == 404
    # Rival has no logo: Acme's version under Rival's id is not Acme's logo.
    assert client.get(f"/brand/{other_company.pk}/logo-{version}.png").status_code == 404
    assert client.get(f"/brand/999999/logo-{version}.png").status_code == 404


def test_replacing_the_logo_changes_its_address(
    login: Callable[..., HttpClient], owner: User, company: Company, client: HttpClient
) -> None:
    browser = login(owner)
    browser.post(URL, {**FORM, "logo": _upload(_image_bytes("PNG", size=(40, 40)))})
    old_url = _branding(company).logo_url()

    browser.post(URL, {**FORM, "logo": _upload(_image_bytes("PNG", size=(80, 40)))})
    new_url = _branding(company).logo_url()

    assert new_url != old_url
    assert client.get(old_url).status_code == 404
    assert client.get(new_url).status_code == 200


def test_current_logo_is_shown_on_the_page(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    browser.post(URL, {**FORM, "logo": _upload(_image_bytes("PNG"))})

    response = browser.get(URL)

    logo_url = _branding(company).logo_url()
    assert f'src="{logo_url}"' in response.content.decode()
    assert f'src="{logo_url}"' in _preview_in_page(response)


def test_remove_logo(
    login: Callable[..., HttpClient], owner: User, company: Company, client: HttpClient
) -> None:
    browser = login(owner)
    browser.post(URL, {**FORM, "logo": _upload(_image_bytes("PNG"))})
    old_url = _branding(company).logo_url()

    response = browser.post(URL, {**FORM, "remove_logo": "on"}, follow=True)

    assert "Branding saved." in _page_text(response)
    assert not _branding(company).has_logo()
    assert "Current logo" not in _page_text(response)
    assert client.get(old_url).status_code == 404
    event = AuditEvent.objects.filter(company=company, action="branding.update").first()
    assert event is not None
    assert event.detail["logo"] == "removed"


def _text_as_png() -> Any:
    return _upload(b"This is not an image, just text with a .png name.\n" * 10)


def _svg() -> Any:
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<script>alert(1)</script><rect width="10" height="10"/></svg>')
    return _upload(svg, name="logo.svg", content_type="image/svg+xml")


def _random_over_1mb() -> Any:
    return _upload(os.urandom(LOGO_MAX_BYTES + 1))


def _valid_png_over_1mb() -> Any:
    data = _noise_png((700, 700))
    assert len(data) > LOGO_MAX_BYTES
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    return _upload(data)


def _gif() -> Any:
    return _upload(_image_bytes("GIF"), name="logo.gif", content_type="image/gif")


def _truncated_png() -> Any:
    data = _noise_png((100, 100))
    return _upload(data[: len(data) // 2])


NOT_AN_IMAGE = "That file is not a PNG, JPEG or WebP image."
TOO_LARGE = "The logo must be 1 MB or smaller."


@pytest.mark.parametrize(
    ("make_upload", "message"),
    [
        (_text_as_png, NOT_AN_IMAGE),
        (_svg, NOT_AN_IMAGE),
        (_random_over_1mb, TOO_LARGE),
        (_valid_png_over_1mb, TOO_LARGE),
        (_gif, NOT_AN_IMAGE),
        (_truncated_png, NOT_AN_IMAGE),
    ],
    ids=["text-named-png", "svg", "random-1MB+1", "valid-png-over-1MB", "gif", "truncated-png"],
)
def test_bad_logo_is_refused_and_nothing_saved(
    login: Callable[..., HttpClient], owner: User, company: Company,
    make_upload: Callable[[], Any], message: str,
) -> None:
    before = _stored(company)

    # A colour change rides along: a refused logo must not let it through either.
    response = login(owner).post(
        URL, {**FORM, "primary_colour": "#000000", "logo": make_upload()}
    )

    assert response.status_code == 200
    assert message in _page_text(response)
    assert "Branding saved." not in _page_text(response)
    assert _stored(company) == before
    assert not AuditEvent.objects.filter(company=company, action="branding.update").exists()


# Colours


COLOUR_HINT = "Enter a colour as # and six hex digits, e.g. "


@pytest.mark.parametrize(
    ("colour", "message"),
    [
        ("red", COLOUR_HINT),
        ("#12345", COLOUR_HINT),
        ("#gggggg", COLOUR_HINT),
        ("1d4ed8", COLOUR_HINT),
        ("#1d4ed8ff", "Ensure this value has at most 7 characters (it has 9)."),
        ("", "This field is required."),
    ],
)
@pytest.mark.parametrize("field", ["primary_colour", "accent_colour"])
def test_malformed_colour_is_refused_with_a_message(
    login: Callable[..., HttpClient], owner: User, company: Company,
    field: str, colour: str, message: str,
) -> None:
    before = _stored(company)

    response = login(owner).post(URL, {**FORM, field: colour})

    assert response.status_code == 200
    page = _page_text(response)
    assert message in page
    assert "Branding saved." not in page
    assert _stored(company) == before


def test_colour_is_stored_in_lower_case(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    login(owner).post(URL, {**FORM, "primary_colour": "#1E3A8A"})
    assert _branding(company).primary_colour == "#1e3a8a"


def test_low_contrast_colour_saves_with_a_wcag_warning(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    response = login(owner).post(URL, {**FORM, "primary_colour": "#ffff00"}, follow=True)

    assert response.status_code == 200
    page = _page_text(response)
    assert "Branding saved." in page
    assert "White text on the primary colour #ffff00" in page
    assert WCAG_WARNING in page
    assert _branding(company).primary_colour == "#ffff00"


def test_readable_colours_show_no_warning(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    response = login(owner).post(URL, FORM, follow=True)
    assert "Branding saved." in _page_text(response)
    assert WCAG_WARNING not in _page_text(response)


# Email text


def test_unknown_placeholder_is_refused_by_name(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    before = _stored(company)

    response = login(owner).post(
        URL, {**FORM, "email_text": "Hi {first_name}, your password is {password}."}
    )

    assert response.status_code == 200
    page = _page_text(response)
    assert "Blink does not know {password}." in page
    assert "Use only {first_name}, {full_name}, {company_name}, {support_email}." in page
    assert _stored(company) == before


def test_known_placeholders_are_filled_in_the_preview(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    browser.post(URL, {
        **FORM,
        "email_text": "Hello {first_name} ({full_name}) from {company_name}. Ask {support_email}.",
    })
    Company.objects.filter(pk=company.pk).update(support_email="desk@acme-it.example")

    preview = _preview_in_page(browser.get(URL))

    assert "Hello Alex (Alex Morgan) from Acme IT. Ask desk@acme-it.example." in preview
    assert "{first_name}" not in preview


def test_html_in_email_text_is_shown_as_text_not_run(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    browser.post(URL, {**FORM, "email_text": "Hi {first_name} <script>alert(1)</script>"})
    assert _branding(company).email_text == "Hi {first_name} <script>alert(1)</script>"

    response = browser.get(URL)

    preview = _preview_in_page(response)
    assert "Hi Alex &lt;script&gt;alert(1)&lt;/script&gt;" in preview
    assert "<script>alert" not in preview
    assert "<script>alert" not in response.content.decode()


def test_branding_page_embeds_the_whole_email_in_the_preview_frame(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    browser.post("/settings/", {
        "name": "Acme IT", "support_email": "desk@acme-it.example",
        "site_url": "https://blink.acme-it.example", "default_country": "US",
    })

    response = browser.get(URL)

    preview = _preview_in_page(response)
    assert preview.startswith("<!doctype html>")
    assert "Activate Blink</a>" in preview
    assert "mailto:desk@acme-it.example" in preview
    # The email is inside the sandboxed frame, not spilled into the console page.
    assert 'role="presentation"' not in response.content.decode()


def test_branding_update_is_audited(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    login(owner).post(URL, {
        **FORM, "primary_colour": "#111827", "email_text": "Hi {first_name}.",
        "logo": _upload(_image_bytes("PNG")),
    })

    events = AuditEvent.objects.filter(company=company, action="branding.update")
    assert events.count() == 1
    event = events.get()
    assert event.actor == owner
    assert event.actor_label == "olivia"
    assert event.ip_address == "127.0.0.1"
    assert event.detail == {
        "changed": {
            "primary_colour": ["#1d4ed8", "#111827"],
            "email_text": ["(previous text)", "(new text)"],
        },
        "logo": "replaced",
    }


# Live preview endpoint


def test_preview_renders_unsaved_branding(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    browser.post("/settings/", {
        "name": "Acme IT", "support_email": "desk@acme-it.example",
        "site_url": "https://blink.acme-it.example", "default_country": "US",
    })
    before = _stored(company)

    response = browser.post(PREVIEW_URL, {
        **FORM, "primary_colour": "#123456",
        "email_text": "Good morning {first_name}, welcome to {company_name}.",
    })

    assert response.status_code == 200
    body = response.json()
    assert "desk@acme-it.example" in body["html"]
    assert "Good morning Alex, welcome to Acme IT." in body["html"]
    assert "background:#123456" in body["html"]
    assert body["warnings"] == []
    assert _stored(company) == before


def test_preview_warns_about_low_contrast(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    response = login(owner).post(
        PREVIEW_URL, {**FORM, "primary_colour": "#FFFF00", "accent_colour": "#dddddd"}
    )

    assert response.status_code == 200
    warnings = response.json()["warnings"]
    assert len(warnings) == 2
    assert "#ffff00" in warnings[0]
    assert "#dddddd" in warnings[1]
    assert all(WCAG_WARNING in warning for warning in warnings)


def test_preview_escapes_html_in_the_email_text(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    response = login(owner).post(
        PREVIEW_URL, {**FORM, "email_text": "<script>alert(1)</script>"}
    )
    body = response.json()["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>" not in body


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"primary_colour": "red"}, "primary_colour", "Enter a colour as # and six hex digits"),
        ({"accent_colour": "#12345"}, "accent_colour", "Enter a colour as # and six hex digits"),
        ({"email_text": "Your {password}"}, "email_text", "Blink does not know {password}."),
    ],
)
def test_preview_of_bad_input_answers_400_with_errors(
    login: Callable[..., HttpClient], owner: User, company: Company,
    changes: dict[str, str], field: str, message: str,
) -> None:
    response = login(owner).post(PREVIEW_URL, {**FORM, **changes})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert message in errors[field][0]


def test_every_member_previews_their_own_company_and_nothing_is_saved(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona
    acme_before = _stored(company)
    rival_before = _stored(other_company)
    events_before = AuditEvent.objects.count()

    response = browser.post(PREVIEW_URL, {**FORM, "primary_colour": "#222222",
                                          "email_text": "Hi {first_name} at {company_name}."})

    assert response.status_code == 200
    html_out = response.json()["html"]
    expected = "Rival MSP" if name == "outsider" else "Acme IT"
    assert f"Hi Alex at {expected}." in html_out
    assert ("Acme IT" in html_out) is (name != "outsider")
    assert _stored(company) == acme_before
    assert _stored(other_company) == rival_before
    assert AuditEvent.objects.count() == events_before


def test_preview_refuses_get(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    assert login(owner).get(PREVIEW_URL).status_code == 405
