"""Client library for the served models: needs tritonclient and numpy, never a framework."""

from maas_client.errors import ServerUnavailableError
from maas_client.urls import DEFAULT_URL, normalize_url

__all__ = ["DEFAULT_URL", "ServerUnavailableError", "normalize_url"]
