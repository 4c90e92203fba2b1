"""spendgate: attribution and spans for AI workloads; the proxy lives in ``spendgate.proxy``.

Importing this package does no work and pulls in no server dependencies.
"""

__all__: list[str] = []
