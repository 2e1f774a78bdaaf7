# `maas serve` without a GPU: the project with its server extra on Python 3.11, serving a
# repository mounted at /models (docker-compose.yml's `cpu` profile). Build context: the
# repository root (see .dockerignore).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/maas

# torch first, CPU build: PyPI's Linux torch==2.13.0 is the CUDA build and pulls several GB of
# nvidia-* wheels. PyTorch's own CPU index serves 2.13.0+cpu, which satisfies the server
# extra's torch==2.13.0 (a local version), so the next step keeps it. --index-url for this one
# package only, as PyTorch's install page says: an --extra-index-url for everything would let
# either index supply any package name (dependency confusion).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu

COPY pyproject.toml README.md ./
COPY maas ./maas
COPY maas_backends ./maas_backends
COPY clients ./clients
# Fails the build if anything replaced the CPU torch with the CUDA one.
RUN pip install ".[server]" \
    && python -c "import torch; assert torch.version.cuda is None, torch.__version__"

# Non-root. docker-compose.yml runs the container as the owner of the admin key file (any
# uid), so the cache (logs, the assembled backend directory) lives where any uid can write.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp maas
ENV MAAS_CACHE=/tmp/maas HOME=/tmp
USER 1000:1000

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --retries=3 --start-period=180s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/v2/health/ready', timeout=4)"]
CMD ["maas", "serve", "--repository=/models", "--host=0.0.0.0", "--metrics-host=0.0.0.0", \
     "--key-file=/run/secrets/maas_admin_key"]
