"""Runnables used only by `make chaos` (scripts/chaos.py); registered through
ORVANTA_RUNNABLE_PACKAGES=runnables,scripts.chaos_runnables in its child processes."""
