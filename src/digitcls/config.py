"""Trainer settings derived from the config."""

from __future__ import annotations

import torch


def trainer_precision(requested: str | int | None) -> str | int:
    """Mixed precision on GPU by default, fp32 on CPU; an explicit value always wins."""
    if requested is not None:
        return requested
    return "16-mixed" if torch.cuda.is_available() else "32-true"
