"""Ingest: OTLP payloads to priced, stored spend records (the receivers in ``receivers/`` feed it).

``otlp`` parses export requests, ``normalize`` turns spans into ``SpendRecord`` (ours, OpenInference,
``gen_ai.*``), ``pipeline`` is the conductor: the only module that knows the order of the stages.
"""
