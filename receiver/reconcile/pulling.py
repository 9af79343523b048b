"""Asking the provider for many pages (or many ids) at once, within the shared rate limit.

The limit, not the round trip, should set the pace: against a provider 300 ms away, one request
at a time reaches 200 a minute of the 1,000 allowed. So `workers` threads fetch while the caller
stores what came, at most `2 × workers` answers held at any time (memory stays flat). Answers
come in batches of those that arrived while the caller was busy, so that a caller slower than
the requests writes more at a time (fewer commits) instead of falling behind; a failed request
stops the lot and says which one failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from ..provider import Page, ProviderClient, ProviderError

K = TypeVar("K")
R = TypeVar("R")


class PullFailed(Exception):
    """A request that still failed after the client's retries; `what` names it (a page, an id)."""

    def __init__(self, what: str, cause: Exception) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"{what}: {cause}")


def in_parallel(
    fetch: Callable[[K], R], keys: Iterable[K], workers: int, name: Callable[[K], str]
) -> Iterator[list[tuple[K, R]]]:
    """(key, fetch(key)) for every key, `workers` at a time, in batches of those that completed."""
    pending: dict[Future[R], K] = {}
    keys = iter(keys)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="reconcile") as pool:
        try:
            for key in keys:
                pending[pool.submit(fetch, key)] = key
                if len(pending) >= 2 * workers:
                    yield _collect(pending, name)
            while pending:
                yield _collect(pending, name)
        finally:
            for future in pending:
                future.cancel()


def _collect(pending: dict[Future[R], K], name: Callable[[K], str]) -> list[tuple[K, R]]:
    """Every answer that has come (waiting for the first)."""
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    batch = []
    for future in done:
        key = pending.pop(future)
        error = future.exception()
        if error is not None:
            if isinstance(error, ProviderError):
                raise PullFailed(name(key), error) from error
            raise error
        batch.append((key, future.result()))
    return batch


def pages(
    client: ProviderClient, path: str, params: Mapping[str, Any], first: int, workers: int
) -> Iterator[list[Page]]:
    """Every page of a paged answer from page `first` on, each asked for with the filters again, in
    batches (see `in_parallel`)."""

    def named(number: int) -> str:
        return f"{path} page {number}"

    def fetch(number: int) -> Page:
        return client.page(path, params, number)

    try:
        page = fetch(first)
    except ProviderError as exc:
        raise PullFailed(named(first), exc) from exc
    yield [page]
    highest = page
    if page.has_next and page.last is not None:
        for batch in in_parallel(fetch, range(first + 1, page.last + 1), workers, named):
            later = [answer for _, answer in batch]
            highest = max([highest, *later], key=lambda p: p.number)
            yield later
    # Without a last page number (or with more pages than it said), one page after another.
    while highest.has_next:
        number = max(highest.next_number, highest.number + 1)
        try:
            highest = fetch(number)
        except ProviderError as exc:
            raise PullFailed(named(number), exc) from exc
        yield [highest]
