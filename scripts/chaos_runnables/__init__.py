"""Runnables used only by `make chaos` (scripts/chaos/); registered through
ORVANTA_RUNNABLE_PACKAGES=runnables,scripts.chaos_runnables in its child processes."""
