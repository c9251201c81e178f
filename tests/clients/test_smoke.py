from __future__ import annotations


def test_clients_page_lists_own_clients_only(login, owner, acme_client, rival_client):
    response = login(owner).get("/clients/")
    assert response.status_code == 200
    assert b"Globex" in response.content
    assert b"Initech" not in response.content
