"""The SSRF guard of recording downloads, and the provider client's limiter, 429s and auth errors."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from receiver.fetcher import Fetcher, HTTPStatus, Policy, Refused, address_refusal, check_url
from receiver.provider import (
    ProviderAuthError,
    ProviderClient,
    RateLimited,
    RedisLimiter,
    SqlLimiter,
    retry_after,
)
from tests.provider_stub import ProviderStub, fake_audio

REDIS_URL = "redis://127.0.0.1:6379/0"
LOCAL = Policy(allow_http=True, allow_private=True, timeout=5)


@pytest.fixture
def stub() -> Iterator[ProviderStub]:
    with ProviderStub() as server:
        yield server


def test_only_https_unless_http_is_allowed():
    with pytest.raises(Refused, match="https only"):
        check_url("http://recordings.example.com/a.mp3", Policy())
    with pytest.raises(Refused, match="https only"):
        check_url("file:///etc/passwd", Policy(allow_http=True))
    with pytest.raises(Refused, match="credentials"):
        check_url("https://user:pw@recordings.example.com/a.mp3", Policy())
    assert (
        check_url("http://recordings.example.com/a.mp3", Policy(allow_http=True)).host
        == "recordings.example.com"
    )


def test_allowed_hosts_are_patterns():
    policy = Policy(allowed_hosts=("*.s3.amazonaws.com", "recordings.mobtexting.com"))
    check_url("https://bucket.s3.amazonaws.com/x.mp3?X-Amz-Expires=3600", policy)
    check_url("https://RECORDINGS.mobtexting.com./x.mp3", policy)
    with pytest.raises(Refused, match="DOWNLOAD_ALLOWED_HOSTS"):
        check_url("https://s3.amazonaws.com.evil.example/x.mp3", policy)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.10.10", "::1", "fe80::1", "fc00::1",
     "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1"],
)  # fmt: skip
def test_private_loopback_and_link_local_addresses_are_refused(address):
    assert address_refusal(address, Policy()) is not None
    assert address_refusal(address, Policy(allow_private=True)) is None


def test_cloud_metadata_is_refused_even_when_private_addresses_are_allowed():
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"):
        assert "metadata" in address_refusal(address, Policy(allow_private=True))
    assert address_refusal("93.184.216.34", Policy()) is None


# Teredo keeps the client's IPv4 address inverted in the last 32 bits (127.0.0.1, 169.254.169.254).
TEREDO_LOOPBACK = "2001:0:4136:e378:8000:63bf:80ff:fffe"
TEREDO_METADATA = "2001:0:4136:e378:8000:63bf:5601:5601"


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::127.0.0.1",  # IPv4-compatible
        "::10.1.2.3",
        "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
        "64:ff9b::192.168.1.1",
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::ffff:0:7f00:1",  # IPv4-translated (SIIT) of 127.0.0.1
        TEREDO_LOOPBACK,
    ],
)
def test_ipv6_forms_of_a_refused_ipv4_address_are_refused(address):
    reason = address_refusal(address, Policy())
    assert reason is not None
    assert address_refusal(address, Policy(allow_private=True)) is None


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 (DNS64) to the metadata service
        "64:ff9b::100.100.100.200",
        "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64 with a /48 prefix
        "64:ff9b:1::a9fe:a9fe",  # and with a /96 one
        "2002:a9fe:a9fe::1",
        "::ffff:0:169.254.169.254",  # IPv4-translated (SIIT)
        TEREDO_METADATA,
    ],
)
def test_ipv6_forms_of_the_metadata_address_are_refused_even_with_allow_private(address):
    assert "metadata" in address_refusal(address, Policy(allow_private=True))


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2606:4700::1"])
def test_ipv6_forms_of_a_public_ipv4_address_are_allowed(address):
    """An IPv6-only network reaches IPv4 hosts through DNS64/NAT64: public ones stay reachable."""
    assert address_refusal(address, Policy()) is None


def test_a_loopback_url_is_refused_at_connect_time_without_allow_private(stub, tmp_path):
    fetcher = Fetcher(Policy(allow_http=True, timeout=5))
    with pytest.raises(Refused, match="loopback"):
        fetcher.fetch(f"{stub.url}/audio/ok/a", tmp_path, 10**6)
    with pytest.raises(Refused, match="loopback"):  # a name that resolves to loopback, too
        fetcher.fetch(f"http://localhost:{stub.server_address[1]}/audio/ok/a", tmp_path, 10**6)
    assert stub.hits["/audio/ok/a"] == 0
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_followed_and_checked_the_same_way(stub, tmp_path):
    fetched = Fetcher(LOCAL).fetch(
        f"{stub.url}/audio/redirect/r?to={stub.url}/audio/ok/target", tmp_path, 10**6
    )
    assert fetched.path.read_bytes() == stub.audio_for("/audio/ok/target")

    only_stub_host = Policy(allow_http=True, allow_private=True, allowed_hosts=("127.0.0.1",))
    with pytest.raises(Refused, match="DOWNLOAD_ALLOWED_HOSTS"):
        Fetcher(only_stub_host).fetch(
            f"{stub.url}/audio/redirect/r?to=http://localhost:{stub.server_address[1]}/audio/ok/x",
            tmp_path,
            10**6,
        )
    with pytest.raises(Refused, match="https only"):
        Fetcher(Policy(allow_private=True, allow_http=True)).fetch(
            f"{stub.url}/audio/redirect/r?to=ftp://127.0.0.1/x", tmp_path, 10**6
        )
    assert stub.hits["/audio/ok/x"] == 0


def test_fetch_streams_to_a_file_with_its_hash_and_reports_statuses(stub, tmp_path):
    stub.audio_size = 300_000
    fetched = Fetcher(LOCAL).fetch(f"{stub.url}/audio/ok/big", tmp_path, 10**6)
    assert fetched.size == 300_000 and fetched.head.startswith(b"ID3")
    assert Path(fetched.path).read_bytes() == fake_audio("big", 300_000)
    with pytest.raises(HTTPStatus) as excinfo:
        Fetcher(LOCAL).fetch(f"{stub.url}/audio/expired/x", tmp_path, 10**6)
    assert excinfo.value.status == 403 and not excinfo.value.transient


def test_a_slow_url_beyond_the_timeout_is_a_transient_error(stub, tmp_path):
    stub.slow_seconds = 10.0
    started = time.monotonic()
    with pytest.raises(Exception) as excinfo:
        Fetcher(Policy(allow_http=True, allow_private=True, timeout=0.2)).fetch(
            f"{stub.url}/audio/slow/s", tmp_path, 10**6
        )
    assert excinfo.value.transient and "timed out" in str(excinfo.value)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []  # the partial file is removed


# -- the provider client ---------------------------------------------------------------------------


@pytest.fixture
def sessionmaker(app):
    return app.extensions["receiver.db"].sessionmaker


def test_the_database_limiter_is_shared_by_every_process(sessionmaker):
    first, second = SqlLimiter(sessionmaker, 3), SqlLimiter(sessionmaker, 3)  # as in two processes
    first.acquire(0.1)
    second.acquire(0.1)
    first.acquire(0.1)
    with pytest.raises(RateLimited):
        second.acquire(0.3)


def test_a_429_blocks_every_process_for_its_retry_after(sessionmaker):
    first, second = SqlLimiter(sessionmaker, 100), SqlLimiter(sessionmaker, 100)
    first.acquire(0.1)
    first.block(1.0)
    started = time.monotonic()
    second.acquire(5)
    assert 0.8 <= time.monotonic() - started < 3


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"receivertest{secrets.token_hex(4)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@pytest.mark.redis
def test_the_redis_limiter_is_shared_and_honours_blocks(redis_prefix):
    first = RedisLimiter(REDIS_URL, redis_prefix, 3)
    second = RedisLimiter(REDIS_URL, redis_prefix, 3)
    for limiter in (first, second, first):
        limiter.acquire(0.1)
    with pytest.raises(RateLimited):
        second.acquire(0.3)
    other = RedisLimiter(REDIS_URL, redis_prefix + "x", 3)
    try:
        other.acquire(0.1)
        other.block(1.0)
        started = time.monotonic()
        RedisLimiter(REDIS_URL, redis_prefix + "x", 3).acquire(5)
        assert 0.8 <= time.monotonic() - started < 3
    finally:
        for key in other.keys:
            other.redis.delete(key)


def test_the_client_pages_backs_off_on_429_and_says_clearly_when_the_token_is_refused(stub, sessionmaker):
    stub.recordings = [{"id": n, "audio": f"u{n}"} for n in range(5)]
    stub.per_page = 2
    stub.throttle = 2
    client = ProviderClient(f"{stub.url}/api/v2", stub.token, SqlLimiter(sessionmaker, 100))
    started = time.monotonic()
    assert [item["id"] for item in client.paginate("voice/recordings", {"x": "1"})] == [0, 1, 2, 3, 4]
    assert time.monotonic() - started >= 1.8  # two Retry-After: 1
    assert len(stub.api_requests) == 2 + 3
    assert [r["query"].get("page") for r in stub.api_requests[-3:]] == [None, ["2"], ["3"]]
    assert {r["query"]["x"][0] for r in stub.api_requests[-3:]} == {"1"}

    bad = ProviderClient(f"{stub.url}/api/v2/", "not-the-token", SqlLimiter(sessionmaker, 100))
    with pytest.raises(ProviderAuthError, match="401") as excinfo:
        bad.get("voice/recordings")
    assert "not-the-token" not in str(excinfo.value)
    stub.html_login = True
    with pytest.raises(ProviderAuthError, match="HTML page"):
        client.get("voice/recordings")


def test_every_page_of_the_recordings_api_is_asked_for_with_the_date_filter_again(stub, sessionmaker):
    """The documented `links` carry `?page=N` alone: following them would page through every day."""
    days = ["2021-04-08", "2021-04-09", "2021-04-10"]
    stub.recordings = [
        {"id": f"{day}/{n}", "audio": "u", "created_at": f"{day} 10:00:0{n}"}
        for day in days
        for n in range(5)
    ]
    stub.per_page = 2
    client = ProviderClient(f"{stub.url}/api/v2", stub.token, SqlLimiter(sessionmaker, 100))
    wanted = {"datetime[r.created_at]": "Apr 09, 2021 - Apr 09, 2021"}
    got = [item["id"] for item in client.paginate("voice/recordings", wanted)]
    assert got == [f"2021-04-09/{n}" for n in range(5)]
    assert len(stub.api_requests) == 3
    for request in stub.api_requests:
        assert request["query"]["datetime[r.created_at]"] == ["Apr 09, 2021 - Apr 09, 2021"]
    # the stand-in's links are the documented ones: the page number alone
    assert stub.api_requests[-1]["query"]["page"] == ["3"]


def test_the_token_is_never_sent_to_another_host(stub, sessionmaker):
    client = ProviderClient(f"{stub.url}/api/v2/", stub.token, SqlLimiter(sessionmaker, 100))
    with pytest.raises(Exception, match="refusing to send the access token"):
        client.get(f"http://localhost:{stub.server_address[1]}/api/v2/voice/recordings")
    assert stub.api_requests == []


def test_retry_after_takes_seconds_or_a_date():
    assert retry_after("7", 60) == 7
    assert retry_after(None, 60) == 60
    assert retry_after("soon", 60) == 60
    assert 0 <= retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 60) <= 0.001


def test_an_endpoint_with_its_own_limit_has_a_bucket_of_its_own(sessionmaker):
    shared = SqlLimiter(sessionmaker, 2)
    vmn = SqlLimiter(sessionmaker, 1, bucket="vmn")
    vmn.acquire(0.1)
    with pytest.raises(RateLimited):
        vmn.acquire(0.2)
    shared.acquire(0.1)
    shared.acquire(0.1)  # the vmn slot taken did not count against the shared two
    with pytest.raises(RateLimited):
        shared.acquire(0.2)
    vmn.block(30)  # a 429 on vmn/logs pauses vmn/logs alone
    assert SqlLimiter(sessionmaker, 3).acquire(0.1) is None


@pytest.mark.redis
def test_the_redis_limiter_keeps_an_endpoints_own_bucket_apart(redis_prefix):
    shared = RedisLimiter(REDIS_URL, redis_prefix, 1)
    vmn = RedisLimiter(REDIS_URL, redis_prefix, 1, bucket="vmn")
    vmn.acquire(0.1)
    vmn.block(30)
    shared.acquire(0.1)
    with pytest.raises(RateLimited):
        RedisLimiter(REDIS_URL, redis_prefix, 5, bucket="vmn").acquire(0.2)
