"""Real-ESRGAN's training-pair pool (BasicSR ``RealESRGANModel._dequeue_and_enqueue``).

The degradation draws one random resize factor, noise type and JPEG quality per batch, so every pair in a
batch shares them. The pool keeps ``size`` recent pairs; once full, each new batch goes in and a random
``batch`` of the pool comes out, so a batch mixes pairs degraded in many different ways.
"""

from __future__ import annotations

import torch


class PairPool:
    """A pool of ``size`` (LR, target) pairs; ``size`` must be a multiple of the batch size."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.lr: torch.Tensor | None = None
        self.target: torch.Tensor | None = None
        self.filled = 0
        self.generator = torch.Generator().manual_seed(seed)

    def exchange(self, lr: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Put a batch in; return it unchanged while the pool fills, afterwards a random batch from the pool."""
        n = lr.shape[0]
        if self.size % n:
            raise ValueError(f"pair pool size {self.size} is not a multiple of the batch size {n}")
        if self.lr is None:
            self.lr = lr.new_empty((self.size, *lr.shape[1:]))
            self.target = target.new_empty((self.size, *target.shape[1:]))
        if self.filled < self.size:
            self.lr[self.filled:self.filled + n] = lr
            self.target[self.filled:self.filled + n] = target
            self.filled += n
            return lr, target
        order = torch.randperm(self.size, generator=self.generator).to(self.lr.device)
        self.lr, self.target = self.lr[order], self.target[order]
        out_lr, out_target = self.lr[:n].clone(), self.target[:n].clone()
        self.lr[:n], self.target[:n] = lr, target
        return out_lr, out_target
