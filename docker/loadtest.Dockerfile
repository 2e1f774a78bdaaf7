# Locust with loadtest/locustfile.py: the project with its loadtest extra (the client and
# Locust; no torch). docker-compose.yml's `load` profile runs it as master and workers.
# Build context: the repository root (see .dockerignore).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/maas

COPY pyproject.toml README.md ./
COPY maas ./maas
COPY maas_backends ./maas_backends
# clients/ also holds the game's adventure, whose characters the locustfile talks to.
COPY clients ./clients
RUN pip install ".[loadtest]"
COPY loadtest ./loadtest

RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp locust
ENV HOME=/tmp
USER 1000:1000

EXPOSE 8089 5557
# The master's web UI (docker-compose.yml turns the check off for workers, which listen on
# no port).
HEALTHCHECK --interval=15s --timeout=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8089/', timeout=4)"]
CMD ["locust", "--locustfile=loadtest/locustfile.py", "--master", "--web-host=0.0.0.0"]
