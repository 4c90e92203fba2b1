"""The proxy's routes, one module per door: chat completions, Cursor, Anthropic Messages and the
Cursor hook endpoint."""
