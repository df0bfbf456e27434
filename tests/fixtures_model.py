"""Model fixtures: tiny random checkpoints in the real on-disk format (filled in by the model layer)."""
