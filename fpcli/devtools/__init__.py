"""Developer tools that are not part of answering questions: `python -m fpcli.devtools tiny-checkpoint DIR`."""
