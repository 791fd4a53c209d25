"""GET /: the self-contained page, its strict Content-Security-Policy, and how it finds the API."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from classifier.handler import create_service
from classifier.page import PAGE_FILE, page
from classifier.settings import Settings
from tests.serving.events import rest_event


@pytest.fixture(scope="module")
def response(tiny_model_dir):
    service = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    return service(rest_event("GET", "/"))


def _headers(resp) -> dict[str, str]:
    out = {k.lower(): ", ".join(v) for k, v in (resp.get("multiValueHeaders") or {}).items()}
    out.update({k.lower(): v for k, v in (resp.get("headers") or {}).items()})
    return out


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_served_as_html_with_a_strict_policy(response):
    assert response["statusCode"] == 200 and not response.get("isBase64Encoded")
    headers = _headers(response)
    assert headers["content-type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self'"  # images go to this API only
    assert csp["frame-ancestors"] == "'none'" and csp["form-action"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]
    html = response["body"]
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert csp["script-src"] == _sha(scripts[0]) and csp["style-src"] == _sha(styles[0])
    assert headers["x-content-type-options"] == "nosniff"


def test_page_is_self_contained_and_always_shows_the_disclaimer(response):
    html = response["body"]
    assert html == PAGE_FILE.read_text(encoding="utf-8")
    # nothing loaded from elsewhere: no external URLs, no script/link/img sources but the empty favicon
    assert not re.search(r"(src|href)\s*=\s*\"(https?:)?//", html)
    assert re.findall(r"<script[^>]*src=", html) == []
    assert "@import" not in html and "url(" not in html
    assert "style=" not in html and not re.search(r"\son[a-z]+=", html)  # no inline styles or handlers
    assert "Research use only. Not a medical device" in html
    assert 'class="disclaimer"' in html and "position: sticky" in html
    # predict and health are called relative to the page (works at / and under the /v1/ stage prefix)
    assert 'base + "predict"' in html and "fetch(\"/" not in html


def test_other_methods_on_the_page_are_405(tiny_model_dir):
    import json

    service = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    resp = service(rest_event("POST", "/", body=b"x", content_type="image/png"))
    assert resp["statusCode"] == 405
    assert json.loads(resp["body"])["error"]["code"] == "method_not_allowed"


def test_policy_follows_the_file():
    html, headers = page()
    assert _sha(re.findall(r"<script>(.*?)</script>", html, re.S)[0]) in headers["Content-Security-Policy"]
