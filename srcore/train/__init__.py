"""Training pieces that need no Ray: configuration, data sampling, the GAN step, checkpoints, validation.

The Ray Train driver lives in ``pipelines/train.py``; ``jobs/train.py`` is its entry point.
"""
