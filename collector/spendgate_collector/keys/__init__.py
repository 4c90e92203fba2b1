"""Virtual keys: the keys file the proxy and the collector share, and managing keys from the collector.

``file`` reads the file, as the control-plane ``KeyEntry`` messages proxies need and as the
principals the normaliser attributes spans with (``KeyDirectory``); ``service`` lists, creates and
revokes keys (file lock, atomic replace, audit); ``api`` serves ``/api/keys``.
"""
