"""tvrec index."""
