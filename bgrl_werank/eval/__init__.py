"""Linear probe and rank diagnostics."""
