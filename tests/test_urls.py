import pytest

from maas_client.errors import InvalidUrlError
from maas_client.urls import normalize_url


@pytest.mark.parametrize(
    "given,expected",
    [
        (None, "127.0.0.1:8000"),
        ("localhost:9000", "localhost:9000"),
        ("http://localhost:9000", "localhost:9000"),
        ("http://localhost:9000/", "localhost:9000"),
        ("gpu-box", "gpu-box:8000"),
        ("  10.0.0.5:8000 ", "10.0.0.5:8000"),
        ("[::1]:8000", "[::1]:8000"),
    ],
)
def test_accepted_urls(given, expected):
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "ftp://host:1", "host:port", "http://host:8000/v2", "host:99999"]
)
def test_rejected_urls_say_what_is_wrong(bad):
    with pytest.raises(InvalidUrlError):
        normalize_url(bad)
