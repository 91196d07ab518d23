"""Label-smoothing cross-entropy with class weights, soft targets and per-sample weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy that equals ``F.cross_entropy(logits, target, weight=class_weight,
    label_smoothing=label_smooth)`` (mean reduction) wherever that is defined, plus ``sample_weight``.

    With ``w`` the class weights (ones when ``None``), ``eps = label_smooth``, ``C`` classes and the
    smoothed target ``q_i = (1 - eps) * t_i + eps / C`` (``t_i`` one-hot for a hard label):

    * per-sample loss ``l_i = -sum_c w_c * q_ic * log_softmax(logits_i)_c``;
    * normaliser ``n_i = w[y_i]`` for a hard label (torch's weighted mean), ``n_i = 1`` for a soft
      target row (torch divides soft targets by N);
    * result ``sum_i s_i * l_i / sum_i s_i * n_i`` with ``s_i = sample_weight[i]`` (ones when ``None``),
      so all-ones sample weights change nothing and zero weights drop samples from the mean.
    """

    class_weight: Tensor | None

    def __init__(
        self, label_smooth: float = 0.0, class_weight: Sequence[float] | Tensor | None = None
    ) -> None:
        super().__init__()
        self.label_smooth = float(label_smooth)
        weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        # a buffer follows the module to the GPU and into checkpoints
        self.register_buffer("class_weight", weight)

    def forward(self, logits: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """``logits`` [N, C]; ``target`` int64 [N] (class indices) or float [N, C] (probabilities)."""
        n, c = logits.shape
        weight = self.class_weight
        # log_softmax in float32: exact and stable under mixed precision (never softmax -> clamp -> log)
        log_probs = F.log_softmax(logits.float(), dim=1)
        if weight is not None:
            weight = weight.to(log_probs.device)

        if target.dim() == 1:
            # hard labels: (1 - eps) * weighted NLL of the label + eps/C * weighted sum over all classes
            nll = -log_probs.gather(1, target.long().unsqueeze(1)).squeeze(1)
            smooth = -log_probs.sum(1) if weight is None else -(log_probs * weight).sum(1)
            normaliser = torch.ones_like(nll) if weight is None else weight[target.long()]
            per_sample = (1 - self.label_smooth) * nll * normaliser + self.label_smooth / c * smooth
        elif target.shape == logits.shape:
            smoothed = target.float() * (1 - self.label_smooth) + self.label_smooth / c
            weighted = smoothed if weight is None else smoothed * weight
            per_sample = -(weighted * log_probs).sum(1)
            normaliser = torch.ones_like(per_sample)
        else:
            raise ValueError(
                f"target must be class indices of shape [{n}] or probabilities of shape [{n}, {c}], "
                f"got shape {list(target.shape)}"
            )

        if sample_weight is not None:
            if sample_weight.shape != (n,):
                raise ValueError(f"sample_weight must have shape [{n}], got {list(sample_weight.shape)}")
            sample_weight = sample_weight.to(per_sample)
            per_sample = per_sample * sample_weight
            normaliser = normaliser * sample_weight
        return per_sample.sum() / normaliser.sum()

    def extra_repr(self) -> str:
        weights = None if self.class_weight is None else [round(w, 4) for w in self.class_weight.tolist()]
        return f"label_smooth={self.label_smooth}, class_weight={weights}"
