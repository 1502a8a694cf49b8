"""The listener process: holds the WebSocket connections and turns frames into jobs.
It never runs user code; runnables run on Celery workers."""
