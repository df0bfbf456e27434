"""Video fixtures: generated clips with known structure (filled in by the video layer)."""
