"""GET /: the page to try the model (static/index.html), served with a strict Content-Security-Policy.

The page is one self-contained file (no CDN, fonts or external scripts). Its one inline <script> and one
<style> are allowed by their sha256 hashes, computed here from the file itself, so editing the page can never
leave the policy stale. It talks only to this API (connect-src 'self') and shows the chosen image from a blob: URL.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

PAGE_FILE = Path(__file__).with_name("static") / "index.html"
_BLOCK = {"script": re.compile(r"<script>(.*?)</script>", re.S), "style": re.compile(r"<style>(.*?)</style>", re.S)}


def _hashes(html: str, tag: str) -> list[str]:
    return ["'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"
            for body in _BLOCK[tag].findall(html)]


@functools.lru_cache(maxsize=1)
def page() -> tuple[str, dict[str, str]]:
    """(the HTML, its response headers)."""
    html = PAGE_FILE.read_text(encoding="utf-8")
    csp = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(_hashes(html, "script")),
        "style-src " + " ".join(_hashes(html, "style")),
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }
    return html, headers
