"""Attribution: who, which repo and how it was known, and how much of the spend that covers.

``windows`` keeps the Cursor hook windows proxies report (the normaliser stamps spans from them),
``coverage`` reports the share of spend with a repository by attribution source, ``reconcile``
compares the gateway's calls with Cursor's own usage, ``api`` serves both over HTTP.
"""
