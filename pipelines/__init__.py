"""srcore's Ray pipelines: the bucket job, training and dataset preparation (``pip install 'srcore[ray]'``)."""

# `srcore bucket|train|prepare` check it: "pipelines" is a common top-level name, and another distribution
# installing one would share this folder (README, "Installing")
__distribution__ = "srcore"
