"""tvrec models."""
