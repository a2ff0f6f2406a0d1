"""Export helpers."""
