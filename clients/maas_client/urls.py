"""One parser for every command's --url, so `HOST:PORT` and `http://HOST:PORT` both work."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from maas_client.errors import InvalidUrlError

DEFAULT_URL = "127.0.0.1:8000"
# What may stand between the scheme and the path: a host name (letters, digits, '-', '_', '.') or
# a bracketed IPv6 literal (with an optional zone), then an optional port. No user, no stray text.
NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+(%[\w.-]+)?\]|[\w.-]+)(:[0-9]*)?")


def normalize_url(url: str | None, default_port: int = 8000) -> str:
    """Return `host:port` as tritonclient wants it, from HOST[:PORT] with or without http://."""
    text = (DEFAULT_URL if url is None else url).strip()
    if not text:
        raise InvalidUrlError("the URL is empty; expected HOST:PORT, e.g. 127.0.0.1:8000")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidUrlError(f"{url!r} has spaces or unprintable characters; expected HOST:PORT")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed '[', a bad IPv6 literal, characters NFKC turns into '/'
        raise InvalidUrlError(f"{url!r} is not HOST:PORT (e.g. 127.0.0.1:8000)") from None
    if parts.scheme not in ("http", "grpc"):
        raise InvalidUrlError(f"unsupported scheme in {url!r}: use HOST:PORT or http://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or not parts.hostname:
        raise InvalidUrlError(f"{url!r} is not HOST:PORT (e.g. 127.0.0.1:8000)")
    try:
        port = parts.port
    except ValueError:
        raise InvalidUrlError(f"{url!r} has an invalid port") from None
    if port == 0:
        raise InvalidUrlError(f"{url!r} has an invalid port")
    if parts.fragment or not NETLOC.fullmatch(parts.netloc):
        raise InvalidUrlError(f"{url!r} is not HOST:PORT (e.g. 127.0.0.1:8000)")
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port or default_port}"
