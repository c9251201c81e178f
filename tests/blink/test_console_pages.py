from __future__ import annotations

import pytest


@pytest.mark.parametrize(("path", "heading"), [("/setup/", "Blink User Setup"),
                                                ("/users/", "Blink Users")])
def test_blink_pages_open_for_every_member(persona, path, heading):
    _, browser = persona
    response = browser.get(path)
    assert response.status_code == 200
    assert f"<h1>{heading}</h1>" in response.content.decode()


def test_navigation_lists_the_console_sections(login, reader):
    page = login(reader).get("/clients/").content.decode()
    for label in ["Blink User Setup", "Blink Users", "Clients", "General", "Branding", "Audit log"]:
        assert f">{label}</a>" in page


def test_home_opens_the_client_list(login, owner):
    assert login(owner).get("/")["Location"] == "/clients/"
