"""Who and where a call is charged to: the repo attribution chain and its sources (workspace path,
model alias, Cursor hook windows and their forwarding), and feature classification."""
