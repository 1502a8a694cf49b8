"""Scripts used only by the tests (registered through ORVANTA_RUNNABLE_PACKAGES)."""
