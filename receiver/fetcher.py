"""Adapter: fetch a recording URL to a local file, streamed, behind an SSRF guard.

The guard has two halves. Before each request (the first and every redirect) the URL must be
https (http only with DOWNLOAD_ALLOW_HTTP) and its host must match DOWNLOAD_ALLOWED_HOSTS when
that is set. At connect time the host is resolved once, every address is checked, and the socket
goes to the checked address, so a name cannot resolve to a public address for the check and a
private one for the connection. TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from .config import Settings

# Cloud instance metadata services: refused even with DOWNLOAD_ALLOW_PRIVATE.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
MAX_REDIRECTS = 5
# IPv6 prefixes that carry an IPv4 address (RFC 6052 NAT64: the well-known and the local-use one).
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# IPv4-translated addresses of stateless IP/ICMP translation (SIIT): ::ffff:0:a.b.c.d.
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


class FetchError(Exception):
    """A download that did not produce a file; `transient` says whether trying again may help."""

    transient = False


class Refused(FetchError):
    """The SSRF guard refused the URL or an address it resolves to."""


class TooLarge(FetchError):
    """The body is over RECORDING_MAX_BYTES."""


class HTTPStatus(FetchError):
    """The server answered with a status other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.transient = status >= 500 or status in (408, 425, 429)


class Network(FetchError):
    """A connection, TLS or timeout error."""

    transient = True


@dataclass(frozen=True)
class FetchPolicy:
    """Where recordings may be fetched from, and how long a fetch may take."""

    allow_http: bool = False
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    timeout: float = 60.0
    max_seconds: float = 1800.0
    ca_bundle: str | None = None  # PEM file of trusted CAs; None: certifi's

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow_http=settings.DOWNLOAD_ALLOW_HTTP,
            allow_private=settings.DOWNLOAD_ALLOW_PRIVATE,
            allowed_hosts=tuple(settings.DOWNLOAD_ALLOWED_HOSTS),
            timeout=settings.DOWNLOAD_TIMEOUT,
            max_seconds=settings.DOWNLOAD_MAX_SECONDS,
            ca_bundle=settings.DOWNLOAD_CA_BUNDLE,
        )


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int
    head: bytes  # the first bytes, for the content check
    content_type: str | None


def check_url(url: str, policy: FetchPolicy) -> httpx.URL:
    """Refuse a URL by scheme, credentials or host pattern; the address check comes at connect time."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise Refused(f"not a valid URL: {exc}") from None
    allowed_schemes = ("https", "http") if policy.allow_http else ("https",)
    if parsed.scheme not in allowed_schemes:
        raise Refused(f"scheme {parsed.scheme or 'none'!r} refused (https only)")
    if not parsed.host:
        raise Refused("URL has no host")
    if parsed.userinfo:
        raise Refused("URL carries credentials")
    host = parsed.host.lower().rstrip(".")
    if policy.allowed_hosts and not any(fnmatch.fnmatchcase(host, p) for p in policy.allowed_hosts):
        raise Refused(f"host {host!r} is not in DOWNLOAD_ALLOWED_HOSTS")
    return parsed


def check_reachable(url: str, policy: FetchPolicy) -> None:
    """Refuse a URL now as a connection to it would be refused: its form, then every address its
    host resolves to (checked again at each connection, as the name may change)."""
    parsed = check_url(url, policy)
    try:
        infos = socket.getaddrinfo(parsed.host, parsed.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"cannot resolve {parsed.host}: {exc}") from None
    for address in dict.fromkeys(str(info[4][0]) for info in infos):
        reason = address_refusal(address, policy)
        if reason is not None:
            raise Refused(f"{parsed.host} resolves to {reason}")


def address_refusal(address: str, policy: FetchPolicy) -> str | None:
    """Why an address may not be connected to, or None when it may.

    An IPv6 address that carries an IPv4 address (IPv4-mapped, -compatible or -translated, NAT64,
    6to4, Teredo) reaches that IPv4 host, so it is refused whenever the IPv4 address would be.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _refusal(ip.ipv4_mapped, policy)
        for embedded in embedded_ipv4(ip):
            reason = _refusal(embedded, policy)
            if reason is not None:
                return f"{ip} carries {embedded}: {reason}"
    return _refusal(ip, policy)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by each standard way of embedding one."""
    value = int(ip)
    found: list[ipaddress.IPv4Address] = []
    if value >> 32 == 0 and value > 1:  # IPv4-compatible ::a.b.c.d (not :: or ::1)
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip in NAT64 or ip in IPV4_TRANSLATED:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip in NAT64_LOCAL:  # its prefix may be any RFC 6052 length that fits in the /48
        found.extend(_rfc6052(value, length) for length in (48, 56, 64, 96))
    if ip.sixtofour is not None:  # 2002::/16, the IPv4 address in bits 16-47
        found.append(ip.sixtofour)
    if ip.teredo is not None:  # 2001::/32: the server, and the client (last 32 bits inverted)
        found.extend(ip.teredo)
    return found


def _rfc6052(value: int, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address after an RFC 6052 prefix of this length (bits 64-71 are always zero)."""
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))  # 120 bits: drop bits 64-71
    start = prefix_length if prefix_length <= 64 else prefix_length - 8
    return ipaddress.IPv4Address((without_u >> (120 - start - 32)) & 0xFFFFFFFF)


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: FetchPolicy) -> str | None:
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if policy.allow_private:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_private or not ip.is_global or ip.is_multicast or ip.is_unspecified:
        return f"{ip} is a private or reserved address"
    return None


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolve once, check every address, connect to a checked one."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            reason = address_refusal(address, self.policy)
            if reason is not None:
                raise Refused(f"{host} resolves to {reason}")
        last: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport, whose every connection goes through the address guard."""

    def __init__(self, policy: FetchPolicy, max_connections: int = 20) -> None:
        verify: ssl.SSLContext | bool = True  # httpx's default: certifi's CAs
        if policy.ca_bundle:
            verify = ssl.create_default_context(cafile=policy.ca_bundle)
        super().__init__(verify=verify, trust_env=False)
        ssl_context = self._pool._ssl_context  # as httpx built it; keep it
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=_GuardedBackend(policy), max_connections=max_connections
        )


class Fetcher:
    """Downloads recordings; one per worker process, shared by its threads."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.client = httpx.Client(
            transport=GuardedTransport(policy),
            timeout=httpx.Timeout(policy.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "receiver (recording download)", "Accept-Encoding": "identity"},
        )

    def fetch(
        self,
        url: str,
        directory: Path,
        max_bytes: int,
        progress: Callable[[int], None] | None = None,
    ) -> Fetched:
        """Stream `url` into a new file under `directory`; the caller renames or removes it."""
        directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        current = check_url(url, self.policy)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with self.client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = check_url(urljoin(str(current), response.headers["location"]), self.policy)
                        continue
                    if response.status_code != 200:
                        raise HTTPStatus(response.status_code)
                    return self._save(response, directory, max_bytes, started, progress)
            except httpx.TimeoutException as exc:
                raise Network(f"timed out: {type(exc).__name__}") from None
            except httpx.TransportError as exc:
                raise Network(f"{type(exc).__name__}: {exc}") from None
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    def _save(
        self,
        response: httpx.Response,
        directory: Path,
        max_bytes: int,
        started: float,
        progress: Callable[[int], None] | None,
    ) -> Fetched:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(f"{declared} bytes is over the cap of {max_bytes}")
        digest = hashlib.sha256()
        size = 0
        head = b""
        fd, name = _temp_file(directory)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in response.iter_bytes():  # as the bytes arrive: progress keeps the lease
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"over the cap of {max_bytes} bytes")
                    if time.monotonic() - started > self.policy.max_seconds:
                        raise Network(f"download took over {self.policy.max_seconds:g} s")
                    if len(head) < 64:
                        head += chunk[: 64 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(size)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Fetched(path, digest.hexdigest(), size, head, response.headers.get("content-type"))


def _temp_file(directory: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix="download-", suffix=".part", dir=directory)
