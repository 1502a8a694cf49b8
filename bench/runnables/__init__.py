"""Runnables used only by `make bench`; registered through
ORVANTA_RUNNABLE_PACKAGES=runnables,bench.runnables in the bench's processes."""
