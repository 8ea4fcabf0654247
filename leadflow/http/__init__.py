"""The HTTP side of the daemon: the /v1 API, probes and Prometheus metrics (FastAPI on uvicorn)."""

from leadflow.http.app import check_http_settings, create_app
from leadflow.http.server import bind, serve

__all__ = ["bind", "check_http_settings", "create_app", "serve"]
