"""One parser for every command's --url, so `HOST:PORT` and `http://HOST:PORT` both work."""

from __future__ import annotations

from urllib.parse import urlsplit

from maas_client.errors import InvalidUrlError

DEFAULT_URL = "127.0.0.1:8000"


def normalize_url(url: str | None, default_port: int = 8000) -> str:
    """Return `host:port` as tritonclient wants it, from HOST[:PORT] with or without http://."""
    text = (DEFAULT_URL if url is None else url).strip()
    if not text:
        raise InvalidUrlError("the URL is empty; expected HOST:PORT, e.g. 127.0.0.1:8000")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "grpc"):
        raise InvalidUrlError(f"unsupported scheme in {url!r}: use HOST:PORT or http://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or not parts.hostname:
        raise InvalidUrlError(f"{url!r} is not HOST:PORT (e.g. 127.0.0.1:8000)")
    try:
        port = parts.port or default_port
    except ValueError:
        raise InvalidUrlError(f"{url!r} has an invalid port") from None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"
