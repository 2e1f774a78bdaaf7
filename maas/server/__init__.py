"""Running the Triton Inference Server that ships inside the nvidia-pytriton wheel."""

from maas.server.config import ServerConfig
from maas.server.supervisor import TritonServer

__all__ = ["ServerConfig", "TritonServer"]
