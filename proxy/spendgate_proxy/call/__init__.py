"""The call engine's pieces: the admission plan, budget replies, routing and fallbacks, the
translating engine, the stream taps and the usage estimate."""
