"""The client's address and scheme when receiver stands behind reverse proxies (TRUSTED_PROXIES).

werkzeug's ProxyFix believes that many hops of X-Forwarded-For and X-Forwarded-Proto; by default
receiver believes none, so that a client cannot name its own address (the console's per-address
sign-in limit, the address kept with each webhook). What the believed hop says must still be an
IP address: anything else (a proxy passing on what a client made up) leaves the proxy's own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def trust_proxies(app: Flask, hops: int) -> None:
    """Read the client's address and scheme from the `hops` proxies in front of `app`."""
    app.wsgi_app = ProxyFix(_addresses_only(app.wsgi_app), x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _addresses_only(inner: WSGIApp) -> WSGIApp:
    def checked(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            ipaddress.ip_address(environ.get("REMOTE_ADDR") or "")
        except ValueError:
            environ["REMOTE_ADDR"] = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        return inner(environ, start_response)

    return checked
