"""Writes that survive a crash: atomic file replaces and append-only JSONL logs."""
