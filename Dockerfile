# leadflow as a container: the daemon (scheduler, outbox sender, rule watcher, HTTP API).
# Configuration comes from the environment (LEADFLOW_SECTION__KEY, secrets as LEADFLOW_..._FILE
# too); rules/ and templates/ can be replaced by mounting folders over /app/rules, /app/templates.
# tests/test_container.py keeps these commands equal to the ones the tests run outside Docker.
# The base image is pinned to a patch release and Debian release, and every Python package to
# the exact version in constraints.txt, so that a rebuild next month installs what was tested.
# Refresh both on purpose (see docs/operations.md, "Upgrading the image").
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 leadflow

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY leadflow ./leadflow
RUN python -m pip install --constraint constraints.txt .

COPY config.yaml daemon.py ./
COPY rules ./rules
COPY templates ./templates
RUN mkdir -p state && chown leadflow:leadflow state

USER leadflow
ENV LEADFLOW_HTTP__HOST=0.0.0.0 \
    LEADFLOW_HTTP__PORT=8080 \
    LEADFLOW_HTTP__ALLOW_ANONYMOUS=false \
    LEADFLOW_LOG__FORMAT=json
VOLUME ["/app/state"]
EXPOSE 8080

# slim has no curl: python's urllib asks /healthz; any error or non-2xx exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LEADFLOW_HTTP__PORT', '8080'), timeout=3)"]

# Exec form: leadflow is PID 1 and receives SIGTERM itself (the daemon handles it and exits 0;
# it starts no child processes, so there are no zombies to reap and no init is needed).
ENTRYPOINT ["leadflow"]
CMD ["daemon"]
