"""tvrec pipelines.features."""
