"""forestprune: ask video LLMs about videos, with ForestPrune visual-token pruning."""

__version__ = "0.1.0"
