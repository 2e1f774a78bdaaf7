"""Models as a service for games: serve, build, check and play with a Triton model repository."""

__version__ = "0.1.0"
