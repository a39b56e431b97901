"""Training losses: pure functions of model outputs and batches."""

from ocjax.losses.reconstruction import mse

__all__ = ["mse"]
