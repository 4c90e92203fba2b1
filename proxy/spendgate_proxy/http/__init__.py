"""The proxy's HTTP side: the fast front for model calls, the exchange both servers hand to handlers,
the SSE response and the reading of an inbound request (key, attribution prefix, JSON body)."""
