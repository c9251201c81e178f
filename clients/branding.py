"""Branding rules: which logos are accepted, which colours read well, and the email text."""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, UnidentifiedImageError

LOGO_MAX_BYTES = 1024 * 1024
LOGO_FORMATS = {"PNG", "JPEG", "WEBP"}
# Logos are shown at most a few hundred pixels wide; anything larger is scaled down.
LOGO_MAX_SIDE = 512
# Refuse absurd dimensions before decoding: a small file can claim a huge canvas.
LOGO_MAX_PIXELS = 4096 * 4096

WCAG_AA_TEXT = 4.5
HEX_PATTERN = r"^#[0-9a-fA-F]{6}$"

# The placeholders the custom email text may use, and what each stands for.
EMAIL_PLACEHOLDERS = {
    "first_name": "the user's first name",
    "full_name": "the user's full name",
    "company_name": "your company's name",
    "support_email": "your support email address",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Logo:
    content: bytes
    content_type: str


def logo_reencode(upload: UploadedFile) -> Logo:
    """Decode an uploaded logo and re-encode it as PNG, refusing anything but a real image.

    Re-encoding drops whatever else the file carried (metadata, trailing data,
    polyglot payloads), so only pixels reach users' browsers and inboxes.
    """
    if upload.size is None or upload.size > LOGO_MAX_BYTES:
        raise ValidationError("The logo must be 1 MB or smaller.", code="too_large")
    data = upload.read(LOGO_MAX_BYTES + 1)
    if len(data) > LOGO_MAX_BYTES:
        raise ValidationError("The logo must be 1 MB or smaller.", code="too_large")
    not_an_image = ValidationError(
        "That file is not a PNG, JPEG or WebP image. SVG and other formats are not accepted.",
        code="not_an_image",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=sorted(LOGO_FORMATS)) as probe:
                width, height = probe.size
                if width * height > LOGO_MAX_PIXELS:
                    raise ValidationError(
                        "The logo is too large in pixels: keep it under 4096 × 4096.",
                        code="too_many_pixels",
                    )
                probe.verify()
            # verify() leaves the image unusable, so decode it again for real.
            with Image.open(io.BytesIO(data), formats=sorted(LOGO_FORMATS)) as image:
                image.load()
                pixels = image.convert("RGBA")
            pixels.thumbnail((LOGO_MAX_SIDE, LOGO_MAX_SIDE))
            out = io.BytesIO()
            pixels.save(out, format="PNG", optimize=True)
    except ValidationError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise not_an_image from None
    except Image.DecompressionBombWarning:
        raise not_an_image from None
    return Logo(content=out.getvalue(), content_type="image/png")


def _relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio between two ``#rrggbb`` colours (1 to 21)."""
    lighter, darker = sorted(
        (_relative_luminance(first), _relative_luminance(second)), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def _ratio_shown(ratio: float) -> str:
    # Rounded down, so a ratio just under 4.5 never reads as "4.5:1, below 4.5:1".
    return f"{math.floor(ratio * 100) / 100:.2f}"


def colour_warnings(*, primary: str, accent: str) -> list[str]:
    """Sentences about colours whose text would fall below WCAG AA (4.5:1)."""
    found = []
    ratio = contrast_ratio(primary, "#ffffff")
    if ratio < WCAG_AA_TEXT:
        found.append(
            f"White text on the primary colour {primary} has a contrast of "
            f"{_ratio_shown(ratio)}:1, below the 4.5:1 that WCAG AA asks for. Buttons and "
            "headings will be hard to read: choose a darker primary colour."
        )
    ratio = contrast_ratio(accent, "#ffffff")
    if ratio < WCAG_AA_TEXT:
        found.append(
            f"Links in the accent colour {accent} on white have a contrast of "
            f"{_ratio_shown(ratio)}:1, below the 4.5:1 that WCAG AA asks for: choose a darker "
            "accent colour."
        )
    return found


def email_text_unknown_placeholders(text: str) -> list[str]:
    """Placeholders in ``text`` that Blink does not know, in order of appearance."""
    unknown: list[str] = []
    for name in _PLACEHOLDER.findall(text):
        if name not in EMAIL_PLACEHOLDERS and name not in unknown:
            unknown.append(name)
    return unknown


def email_text_render(text: str, values: Mapping[str, str]) -> str:
    """Fill the known placeholders of the custom email text; the result is plain text.

    Values are substituted once, so a user name containing ``{company_name}``
    stays literal. HTML escaping happens in the template, not here.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return values.get(name, match.group(0)) if name in EMAIL_PLACEHOLDERS else match.group(0)

    return _PLACEHOLDER.sub(fill, text)
