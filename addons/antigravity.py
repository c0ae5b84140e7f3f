"""mitmproxy entry point: ``mitmdump -s addons/antigravity.py``. The code lives in ``antigravity_gw``."""

from antigravity_gw import make_addons

addons = make_addons()
