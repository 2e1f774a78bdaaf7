"""One exception family, so the CLI prints a user's mistake in one line, not a traceback."""


class MaasError(Exception):
    """Something the user can act on; the message says what and, where possible, how."""


class TritonNotInstalledError(MaasError):
    """The Triton binary from nvidia-pytriton is missing."""


class PortInUseError(MaasError):
    """A port we were asked to listen on is taken."""


class ModelLoadError(MaasError):
    """One or more models did not load; the message names each and Triton's reason."""


class ServerStartError(MaasError):
    """Triton exited or did not become ready."""
