"""The spendgate proxy: a streaming OpenAI-compatible gateway that turns every call into one span.

``create_app`` builds the aiohttp application; ``spendgate proxy`` (``spendgate_proxy.cli``) runs
it. Needs the ``proxy`` extra (aiohttp, orjson, pyyaml, pydantic).
"""

from spendgate_proxy.app import create_app
from spendgate_proxy.config import ProxySettings, load_config

__all__ = ["ProxySettings", "create_app", "load_config"]
