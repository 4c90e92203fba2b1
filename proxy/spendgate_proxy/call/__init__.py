"""The call engine's pieces: the admission plan, budget replies, routing and fallbacks, the
translating engine and the stream taps (the usage estimate is ``formats.estimate``)."""
