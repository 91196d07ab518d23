"""Serving a trained model over HTTP (LitServe): ``python -m digitcls.serve`` / ``make serve``."""
