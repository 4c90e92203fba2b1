"""One span per call: the call record, span attributes and the export worker, the OTLP encoding and
senders, and the redaction of captured content."""
