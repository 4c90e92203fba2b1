"""Helpers every HTTP route shares: capped JSON bodies and the audit actor (``body``), blocking calls off the loop."""
