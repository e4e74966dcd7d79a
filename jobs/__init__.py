"""tvrec jobs."""
