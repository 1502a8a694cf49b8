"""Runnables used only by `make conformance` (scripts/conformance.py); registered through
ORVANTA_RUNNABLE_PACKAGES=runnables,scripts.conformance_runnables in its child processes."""
