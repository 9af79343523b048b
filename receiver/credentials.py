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


# Words in a header's name that say its value is a credential, though no rule of ours reads it (a
# custom header set on the portal's webhook): such a header is kept with its value REDACTED.
CREDENTIAL_WORDS = ("secret", "token", "password", "passwd", "apikey", "api-key", "auth", "session")


def is_credential_header(name: str) -> bool:
    """Whether a request header's value must not be kept or shown."""
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(word in lowered for word in CREDENTIAL_WORDS)


def is_credential(name: str) -> bool:
    """Whether a (percent-decoded) query parameter name carries a credential."""
    return name.lower() in CREDENTIAL_PARAMS
