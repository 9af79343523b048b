"""HTTPS recording downloads: the socket goes to the address the SSRF guard checked, and TLS
still verifies the certificate against the URL's host name (SNI and hostname check)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from receiver.fetcher import Fetcher, FetchPolicy, Network
from tests.provider_stub import ProviderStub, fake_audio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def https_stub(ca: trustme.CA, *names: str) -> ProviderStub:
    """The provider stub over HTTPS, with a certificate for `names` issued by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return ProviderStub(tls=context)


@pytest.fixture
def localhost_stub(ca: trustme.CA) -> Iterator[ProviderStub]:
    with https_stub(ca, "localhost") as server:
        yield server


def fetcher(ca_bundle: str | None) -> Fetcher:
    # localhost is a loopback address: private addresses allowed, as in every local test.
    return Fetcher(FetchPolicy(allow_private=True, timeout=5, ca_bundle=ca_bundle))


def test_an_https_recording_is_fetched_through_the_checked_address(localhost_stub, ca_bundle, tmp_path: Path):
    url = f"{localhost_stub.url}/audio/ok/call-1.mp3"

    fetched = fetcher(ca_bundle).fetch(url, tmp_path, max_bytes=10**7)

    assert fetched.path.read_bytes() == fake_audio("call-1.mp3")
    assert localhost_stub.hits["/audio/ok/call-1.mp3"] == 1


def test_a_certificate_for_another_host_is_refused(ca, ca_bundle, tmp_path: Path):
    """Connecting by address must not skip the host name check: a certificate valid for
    another name, from a trusted CA, fails the download."""
    with https_stub(ca, "recordings.example.com") as server:
        with pytest.raises(Network, match="CERTIFICATE_VERIFY_FAILED|certificate|hostname"):
            fetcher(ca_bundle).fetch(f"{server.url}/audio/ok/call-2.mp3", tmp_path, max_bytes=10**7)
        assert server.hits["/audio/ok/call-2.mp3"] == 0
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_from_an_untrusted_ca_is_refused(localhost_stub, tmp_path: Path):
    """Without DOWNLOAD_CA_BUNDLE, only certifi's authorities are trusted."""
    with pytest.raises(Network, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        fetcher(None).fetch(f"{localhost_stub.url}/audio/ok/call-3.mp3", tmp_path, max_bytes=10**7)
    assert localhost_stub.hits["/audio/ok/call-3.mp3"] == 0


def test_a_ca_bundle_that_cannot_be_read_stops_the_start(settings, tmp_path: Path):
    """A wrong DOWNLOAD_CA_BUNDLE is refused when the app starts, not found by each download."""
    from receiver import create_app

    settings["DOWNLOAD_CA_BUNDLE"] = str(tmp_path / "missing.pem")
    with pytest.raises(RuntimeError, match="DOWNLOAD_CA_BUNDLE"):
        create_app(settings)
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    settings["DOWNLOAD_CA_BUNDLE"] = str(tmp_path / "garbage.pem")
    with pytest.raises(RuntimeError, match="DOWNLOAD_CA_BUNDLE"):
        create_app(settings)
