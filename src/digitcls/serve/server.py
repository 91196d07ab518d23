"""Build and run the LitServe server: ``POST /predict``, ``GET /health``, ``GET /info`` and the page at ``/``."""

from __future__ import annotations

import socket
from importlib.resources import files
from pathlib import Path

import litserve as ls
from fastapi.routing import APIRoute
from omegaconf import DictConfig
from starlette.responses import HTMLResponse

from digitcls.errors import ConfigError
from digitcls.inference import Predictor
from digitcls.serve.api import DigitAPI
from digitcls.serve.gate import Limits, PredictGate

HOSTS = {"127.0.0.1": "this machine only", "0.0.0.0": "every IPv4 interface", "::": "every interface"}
MAX_BATCH_SIZE = 1024  # one batch is this many small images: bounded so memory per batch is bounded
REQUEST_TIMEOUT_S = 30.0
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
PAGE = files("digitcls.serve") / "static" / "index.html"


def check_serve_config(cfg: DictConfig) -> None:
    """Every serve key checked before a process starts, each error naming the key and what is allowed."""
    if cfg.host not in HOSTS:
        raise ConfigError(
            f"host: {cfg.host!r} is not allowed; use 127.0.0.1 (default, this machine only), or 0.0.0.0 / :: to "
            "accept connections from other machines."
        )
    if not isinstance(cfg.port, int) or not 1024 <= cfg.port <= 65535:
        raise ConfigError(f"port: must be an integer from 1024 to 65535, got {cfg.port!r}; e.g. port=8000.")
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise ConfigError(f"workers: must be a positive integer, got {cfg.workers!r}; e.g. workers=1.")
    if not isinstance(cfg.max_batch_size, int) or not 1 <= cfg.max_batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(
            f"max_batch_size: must be an integer from 1 (no batching) to {MAX_BATCH_SIZE}, got {cfg.max_batch_size!r}."
        )
    if not isinstance(cfg.batch_timeout, int | float) or not 0 <= cfg.batch_timeout < REQUEST_TIMEOUT_S:
        raise ConfigError(
            f"batch_timeout: must be seconds from 0 to under {REQUEST_TIMEOUT_S:g}, got {cfg.batch_timeout!r}; "
            "e.g. batch_timeout=0.01."
        )
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level: {cfg.log_level!r} is not one of {', '.join(LOG_LEVELS)}.")
    for key in ("max_request_bytes", "max_image_pixels"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key}: must be a positive integer, got {cfg[key]!r}.")


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program holds with a message (uvicorn would only log and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"port: {port} on {host} cannot be used ({error.strerror or error}); choose another with port=<n>."
            ) from None


def build_server(cfg: DictConfig, model_path: Path, predictor: Predictor) -> ls.LitServer:
    api = DigitAPI(str(model_path), predictor.img_size, cfg.max_batch_size, float(cfg.batch_timeout))
    limits = Limits(max_request_bytes=cfg.max_request_bytes, max_image_pixels=cfg.max_image_pixels)
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=cfg.workers,
        timeout=REQUEST_TIMEOUT_S,
        middlewares=[(PredictGate, {"img_size": predictor.img_size, "limits": limits})],
        model_metadata={"class_names": predictor.class_names, "img_size": list(predictor.img_size)},
    )
    _replace_index_with_page(server)
    return server


def _replace_index_with_page(server: ls.LitServer) -> None:
    """LitServe answers ``GET /`` with "litserve running"; digitcls answers it with the drawing page."""
    page = PAGE.read_text(encoding="utf-8")
    routes = server.app.router.routes
    routes[:] = [r for r in routes if not (isinstance(r, APIRoute) and r.path == "/" and "GET" in r.methods)]

    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    server.app.add_api_route("/", index, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)


def banner(cfg: DictConfig, model_path: Path) -> str:
    where = HOSTS[cfg.host]
    shown = "[::]" if cfg.host == "::" else cfg.host
    lines = [
        f"digitcls serve: {model_path}",
        f"listening on http://{shown}:{cfg.port}/ ({where})",
    ]
    if cfg.host == "127.0.0.1":
        lines.append("local only: other machines cannot connect; host=0.0.0.0 listens on every interface")
    else:
        lines.append(f"WARNING: host={cfg.host} accepts connections from other machines; anyone who can reach this "
                     "port can use the model")
    lines.append("draw a digit at / ; POST /predict ; GET /health ; Ctrl-C stops")
    return "\n".join(lines)
