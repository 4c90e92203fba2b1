"""Cursor attribution helpers: the hook script that reports the repo, and the installer that wires it in.

``spendgate cursor install-hooks`` (``cli.py``) writes ``.cursor/hooks.json`` and the script; the
script itself (``hook_script.py``) is standard-library only, since it runs under the system
``python3``, not spendgate's environment. See docs/cursor-attribution.md.
"""

from __future__ import annotations

__all__ = ["HOOK_EVENTS", "SCRIPT_RELPATH", "install_hooks", "script_source"]


def __getattr__(name: str) -> object:
    # Lazy: `import spendgate_proxy.cursor` must not import the installer until asked.
    if name in __all__:
        from spendgate_proxy.cursor import install

        return getattr(install, name)
    raise AttributeError(name)
