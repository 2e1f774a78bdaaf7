"""Errors a game can catch by name."""


class MaasClientError(Exception):
    """Base of every client-side error; the message is fit to show a player or developer."""


class ServerUnavailableError(MaasClientError):
    """Nothing answers at the URL, or the server is not live."""


class InvalidUrlError(MaasClientError, ValueError):
    """A --url that is not HOST:PORT."""
