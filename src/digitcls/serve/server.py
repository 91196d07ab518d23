"""Build and run the LitServe server: ``POST /predict``, ``GET /health``, ``GET /info`` and the page at ``/``."""

from __future__ import annotations

import socket
from importlib.resources import files
from pathlib import Path

import litserve as ls
from omegaconf import DictConfig
from starlette.responses import HTMLResponse

from digitcls.errors import ConfigError
from digitcls.inference import Predictor
from digitcls.private_apis import wake_litserve_on_signals
from digitcls.schema import SERVE_HOSTS, SERVE_REQUEST_TIMEOUT_S
from digitcls.serve.api import DigitAPI
from digitcls.serve.gate import PredictGate

HOSTS = dict(zip(SERVE_HOSTS, ("this machine only", "every IPv4 interface", "every interface"), strict=True))
PAGE = files("digitcls.serve") / "static" / "index.html"
# how long a stopping server waits for requests in flight (uvicorn's timeout_graceful_shutdown), instead of
# LitServe's 30 s: a request takes milliseconds, and a stop must leave the port free within seconds
STOP_GRACE_S = 5


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
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=cfg.workers,
        timeout=SERVE_REQUEST_TIMEOUT_S,
        middlewares=[(PredictGate, {"img_size": predictor.img_size, "max_image_pixels": cfg.max_image_pixels,
                                     "max_request_bytes": cfg.max_request_bytes})],
        model_metadata={"class_names": predictor.class_names, "img_size": list(predictor.img_size)},
    )
    server.uvicorn_graceful_timeout = STOP_GRACE_S
    wake_litserve_on_signals(server)  # a signal may reach another thread than the one waiting
    # LitServe answers GET / with "litserve running"; digitcls answers it with the drawing page
    page = HTMLResponse(PAGE.read_text(encoding="utf-8"))
    server.app.router.routes[:] = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    server.app.add_api_route("/", lambda: page, methods=["GET"], include_in_schema=False)
    return server


def banner(cfg: DictConfig, model_path: Path) -> str:
    shown = "[::]" if cfg.host == "::" else cfg.host
    lines = [f"digitcls serve: {model_path}", f"listening on http://{shown}:{cfg.port}/ ({HOSTS[cfg.host]})"]
    if cfg.host == "127.0.0.1":
        lines.append("local only: other machines cannot connect; host=0.0.0.0 listens on every interface")
    else:
        lines.append(f"WARNING: host={cfg.host} accepts connections from other machines; anyone who can reach this "
                     "port can use the model")
    here = "[::1]" if cfg.host == "::" else "127.0.0.1"  # an address a browser on this machine can open
    lines += [
        f"open http://{here}:{cfg.port}/ in a browser to draw a digit, once GET /health answers ok (the model "
        "worker starts in a few seconds); POST /predict takes an image",
        "Ctrl-C (or kill <pid>) stops the server and every process it started",
    ]
    return "\n".join(lines)
