"""The UI's pieces that need no server: sessions, language choice, the string table, the guard's checks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI

from gateway.errors import InvalidImageError
from gateway.ui.actions import FormValues, UiActions
from gateway.ui.guard import file_allowed, same_origin
from gateway.ui.session import SessionSigner
from gateway.ui.texts import TEXTS, pick_language


def test_a_session_names_its_key_and_nothing_else_verifies() -> None:
    signer = SessionSigner(b"s" * 32, max_age_s=60)
    value = signer.issue("alice.team", now=1000)
    assert signer.verify(value, now=1030) == "alice.team"
    assert signer.verify(value, now=1061) is None  # expired
    assert SessionSigner(b"t" * 32, 60).verify(value, now=1030) is None  # another secret
    name, issued, mac = value.split(".")
    forged = f"{SessionSigner(b's' * 32, 60).issue('bob', now=1000).split('.')[0]}.{issued}.{mac}"
    assert signer.verify(forged, now=1030) is None
    for junk in (None, "", "a.b", "a.b.c.d", "!!.1.x"):
        assert signer.verify(junk, now=1030) is None
    assert "alice" not in value  # the cookie does not show the name in clear, and never a key


@pytest.mark.parametrize(("header", "language"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9,zh;q=0.8", "en"), ("fr-FR,zh-TW;q=0.5", "zh"),
    ("de", "en"), (None, "en"), ("en;q=0.1,zh;q=0.9", "zh"), ("zh;q=bad", "en")])
def test_language_follows_the_browser(header: str | None, language: str) -> None:
    assert pick_language(header) == language


def test_every_string_exists_in_both_languages() -> None:
    assert TEXTS["en"].keys() == TEXTS["zh"].keys()


def test_file_routes_serve_only_inside_the_ui_folders(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (root / "link").symlink_to("/etc")
    roots = [root.resolve()]
    assert file_allowed(f"{root}/a.mp4", roots)
    for path in ("/etc/passwd", f"{root}/../../../../etc/passwd", f"{root}/link/passwd",
                 f"{root}/%2e%2e/%2e%2e/etc/passwd", f"{root}/%252e%252e%252f%252e%252e%252fetc/passwd",
                 "../../../etc/passwd", "http://example.com/x.png", ""):
        assert not file_allowed(path, roots), path


def _scope(headers: dict[str, str]) -> dict:
    return {"type": "http", "scheme": "http", "method": "POST", "path": "/ui/x", "server": ("127.0.0.1", 8000),
            "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1:8000", **headers}.items()]}


def test_state_changes_need_this_gateways_origin() -> None:
    assert same_origin(_scope({"origin": "http://127.0.0.1:8000"}), None)
    assert same_origin(_scope({"referer": "http://127.0.0.1:8000/ui/"}), None)
    assert same_origin(_scope({"origin": "https://videos.example.com"}), "https://videos.example.com/")
    for headers in ({}, {"origin": "null"}, {"origin": "http://evil.example"},
                    {"origin": "http://127.0.0.1:8001"}, {"referer": "http://127.0.0.1.evil.example/"}):
        assert not same_origin(_scope(headers), None), headers


def test_an_expired_upload_asks_for_the_image_again(tmp_path: Path) -> None:
    """Uploads are deleted after I2V_RETENTION_S; a form still naming one gets the reason, not a 500."""
    form = FormValues(image=str(tmp_path / "deleted.png"), prompt="a cat", negative_prompt="", resolution="256p",
                      num_frames=8, fps=8, steps=2, guidance_scale=9.0, seed=None, random_seed=True, fit="crop")
    with pytest.raises(InvalidImageError, match="expired; upload the image again"):
        asyncio.run(UiActions(FastAPI()).submit(form, "en", SimpleNamespace(username="alice")))  # type: ignore[arg-type]
