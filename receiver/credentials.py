"""Which query parameters and headers carry credentials: never stored, logged or read as payload.

`secret` is a source's secret (for callbacks that cannot set a header), `token` its validation
key, `access_token` the provider's API token. Names match in any case, once percent-decoded.
This module imports nothing of the app: gunicorn's master uses it before the fork.
"""

from __future__ import annotations

CREDENTIAL_PARAMS = frozenset({"secret", "token", "access_token"})
# Request headers that carry credentials (lower case): never stored with a raw request, nor logged.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")
# What a credential's value is replaced by, wherever it would be kept or logged.
REDACTED = "REDACTED"


def is_credential(name: str) -> bool:
    """Whether a (percent-decoded) query parameter name carries a credential."""
    return name.lower() in CREDENTIAL_PARAMS
