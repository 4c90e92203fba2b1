"""The proxy's routes, one module per door: chat completions, Cursor, Anthropic Messages, the model
list and the Cursor hook endpoint. ``app.py`` puts them in the route table."""
