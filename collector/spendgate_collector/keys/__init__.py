"""Virtual keys: the keys file the proxy and the collector share, and managing keys from the collector.

``file`` reads the file as control-plane ``KeyEntry`` messages, ``directory`` keeps the principals
the normaliser attributes spans with, ``service`` lists, creates and revokes keys (file lock, audit),
``api`` serves ``/api/keys``.
"""
