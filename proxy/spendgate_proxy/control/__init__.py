"""The proxy's side of the control stream from the collector: the applied state (keys, verdicts,
budget states) that the request path reads, and the client that keeps it current."""
