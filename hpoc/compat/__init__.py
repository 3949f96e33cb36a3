"""Compatibility layers for trainers written for other tools.

`hpoc.compat.itwinai`: itwinai's `RayTorchTrainer` API on top of hpoc's `Trainer` and
strategies, so an itwinai HPO trainer runs with only its imports changed.
"""
