"""tvrec feature_repo."""
