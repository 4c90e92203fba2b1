"""The ``spendgate`` command and ``spendgate up``: the composition root above the programs.

``cli.py`` is the umbrella command (its subcommands are imported only when run, from the package
that owns them); ``up.py`` runs the proxy, the collector and the simulated provider in one process;
``demo.py`` is the sample traffic of ``spendgate up --demo``. Nothing here is imported by the SDK
(``spendgate``), the proxy (``spendgate_proxy``), the collector or the simulator.
"""
