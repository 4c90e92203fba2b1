"""Reading spend: the query API (``api``), reports for the CLI and the API (``report``) and ``spendgate status``.

The query vocabulary itself (``SpendFilter``, dimensions, measures) is the store's: ``store/query.py``.
"""
