"""The WebSocket client side of the app, shared by the listener and the test
connection of the API and the admin: resolving a trigger's URL (a runnable on a
worker), the SSRF-checked connect through any proxy, the bounded socket
websocket-client runs on, and the probe."""
