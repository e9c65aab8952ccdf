"""Predictions of randomized models: what counts as a prediction, and as a break, when two passes disagree.

A randomized defence (noise, random resizing, dropout at inference) gives a random label, so "the model
misclassifies x_adv" is a probability, not a fact. robbench's definition, for a run with
``prediction_draws = K``:

- the model's **prediction** at x is the class of the mean softmax over K independent forward passes
  (``AveragedPrediction``; K = 1 is the model itself). The clean pass, every attack and the verification
  of every break use it: the evaluated classifier *is* the averaged one, and a gradient through it is an
  expectation over transformation (EOT) of K draws, on top of any EOT an attack does itself
  (``apgd(eot_iter=...)``, ``autoattack(version=rand)``);
- a **break** counts when the averaged prediction at a verified adversarial input is wrong;
- after the run every counted break is **re-verified** ``redraws`` more times (``RunOptions.redraws``,
  default 10), each a fresh averaged
  prediction of K passes; the record states the draws, the redraws and the fraction of re-verifications
  that were still wrong (``Reverification``). A rate near 1 says the breaks are solid; a low rate says
  the robust accuracy depends on luck, and that K should grow.

The randomness itself comes from torch's global generator, which the evaluation seeds from the
recorded seed, so a run is reproducible on the same machine; the re-verification rate says how much
that reproduction is worth.
"""

from __future__ import annotations

import torch
from torch import nn

from .results import Reverification

class AveragedPrediction(nn.Module):
    """``log(mean_k softmax(model(x)))`` over ``draws`` forward passes: a randomized model's averaged prediction.

    Log-probabilities, not logits: argmax is the averaged prediction and cross-entropy on them is the loss
    of the averaged classifier; gradients flow through every draw.
    """

    def __init__(self, model: nn.Module, draws: int):
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(self.model(x).float(), dim=1) for _ in range(self.draws)])
        return probabilities.mean(0).clamp_min(torch.finfo(torch.float32).tiny).log()


def averaged(model: nn.Module, draws: int) -> nn.Module:
    """The classifier a run with ``prediction_draws = draws`` evaluates (``model`` itself for one draw)."""
    return model if draws == 1 else AveragedPrediction(model, draws)


def wrong_counts(predictor: nn.Module, x: torch.Tensor, y: torch.Tensor, *, redraws: int, batch_size: int,
                 device: torch.device) -> torch.Tensor:
    """Per example, in how many of ``redraws`` fresh predictions ``predictor`` (an averaged prediction) is wrong."""
    counts = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            counts.append(sum((predictor(xb).argmax(1) != yb).long() for _ in range(redraws)).cpu())
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def reverify(predictor: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *, draws: int, redraws: int,
             batch_size: int, device: torch.device) -> Reverification:
    """Re-run the averaged prediction ``redraws`` times on every break (``x_adv``, labels ``y``)."""
    still_wrong = int(wrong_counts(predictor, x_adv, y, redraws=redraws, batch_size=batch_size, device=device).sum())
    breaks = int(x_adv.shape[0])
    rate = still_wrong / (breaks * redraws) if breaks else None
    return Reverification(draws=draws, redraws=redraws, breaks=breaks, still_wrong=still_wrong, rate=rate)
