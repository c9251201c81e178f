from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from blink.env import env_bool, env_int, env_list, env_secret


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on"])
def test_true_spellings(monkeypatch, raw):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", default=False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_false_spellings(monkeypatch, raw):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", default=True) is False


def test_unset_boolean_takes_default(monkeypatch):
    monkeypatch.delenv("FLAG", raising=False)
    assert env_bool("FLAG", default=True) is True


def test_bad_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("FLAG", "yes please")
    with pytest.raises(ImproperlyConfigured, match="FLAG='yes please' is not a boolean"):
        env_bool("FLAG", default=False)


def test_int_refuses_text_and_values_below_minimum(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="N='ten' is not a whole number"):
        env_int("N", default=1)
    monkeypatch.setenv("N", "-1")
    with pytest.raises(ImproperlyConfigured, match="N must be at least 0"):
        env_int("N", default=1, minimum=0)
    monkeypatch.setenv("N", "42")
    assert env_int("N", default=1, minimum=0) == 42


def test_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("HOSTS", " a.example, ,b.example,")
    assert env_list("HOSTS") == ["a.example", "b.example"]


def test_secret_from_file(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cr3t\n")
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_FILE", str(secret))
    assert env_secret("TOKEN") == "s3cr3t"


def test_secret_set_twice_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKEN", "a")
    monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "key"))
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("TOKEN")


def test_unreadable_secret_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="TOKEN_FILE"):
        env_secret("TOKEN")
