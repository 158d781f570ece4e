"""Run directories: every file name (layout), save/load, the checkpoint lister, the run lock."""
