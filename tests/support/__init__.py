"""The support kit tests, bench and chaos share: free ports, private redis-server and
PostgreSQL servers, subprocesses with their output captured, WebSocket servers on a
thread of their own, raw frames, percentiles. Not part of the app's wheel."""
