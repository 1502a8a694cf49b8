"""Scripts that triggers run. A script is a module here: `examples/echo` is
`runnables/examples/echo.py`. It defines main(...) and may define preprocessor(event)."""
