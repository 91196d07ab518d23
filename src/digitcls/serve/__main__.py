"""`make serve` / `python -m digitcls.serve`: the model over HTTP with LitServe, and a page to draw digits on."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitcls.cli import friendly_errors
from digitcls.inference import load_predictor
from digitcls.runs import newest_best_checkpoint
from digitcls.schema import validated
from digitcls.serve.server import banner, build_server, check_port_free
from digitcls.serve.stopping import stop_on_signals


def serve(cfg: DictConfig) -> None:
    cfg = validated(cfg, "serve")
    model_path = Path(cfg.model_path) if cfg.model_path else newest_best_checkpoint()
    # loaded here too, so a bad model_path is a message before any worker starts, and the request
    # checks know the model's img_size
    predictor = load_predictor(model_path)
    check_port_free(cfg.host, cfg.port)
    server = build_server(cfg, model_path, predictor)
    print(banner(cfg, model_path), flush=True)
    received = stop_on_signals()
    server.run(host=cfg.host, port=cfg.port, log_level=cfg.log_level, generate_client_file=False)
    # run returns after LitServe's shutdown has joined every process it started
    stopped = f"digitcls serve: stopped on {', '.join(received) or 'request'}"
    print(f"{stopped}; every process it started has exited and port {cfg.port} is free", flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    friendly_errors(serve)(cfg)


if __name__ == "__main__":
    main()
