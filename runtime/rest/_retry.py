"""When a failed request may be sent again, and how long to wait first.

The rule: retry only what cannot do a thing twice.

* ``GET``, ``HEAD``, ``OPTIONS``, ``PUT`` and ``DELETE`` are idempotent (doing them
  twice is the same as once), so they are retried after any network error and
  after 502, 503 and 504.
* ``POST`` and ``PATCH`` are not: a message posted twice is posted twice. They
  are retried only when the failure proves Discord did not process them:

  - the connection was never made (``ConnectError``, ``ConnectTimeout``) or
    no connection was free in time (``PoolTimeout``): nothing was sent;
  - 429: Discord refused the request before doing anything;
  - 502 and 503: the edge found no server to handle the request.

  They are *not* retried after ``ReadError``, ``ReadTimeout``,
  ``RemoteProtocolError``, ``WriteError``, ``WriteTimeout`` or a 504: the
  request may have been sent in full and executed before the answer was lost.

429s are retried by every method after the wait Discord asks for; all retries
together make at most ``max_retries`` more attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

import httpx

__all__ = ["IDEMPOTENT", "backoff_delay", "may_retry_error", "may_retry_status"]

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUSES: Final = frozenset({502, 503, 504})
_UNPROCESSED_STATUSES: Final = frozenset({502, 503})


def may_retry_error(method: str, error: Exception) -> bool:
    """Whether a request that got no answer (``error``) may be sent again."""
    if method in IDEMPOTENT:
        return isinstance(error, httpx.TransportError)
    return isinstance(error, _NOT_SENT)


def may_retry_status(method: str, status: int) -> bool:
    """Whether a 5xx answer allows sending the request again (429 is handled apart)."""
    if method in IDEMPOTENT:
        return status in _RETRY_STATUSES
    return status in _UNPROCESSED_STATUSES


def backoff_delay(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): capped exponential, jittered.

    The jitter (between half and all of the step) keeps many bots, or many
    requests of one bot, from retrying in lock step after a shared outage.
    """
    step = min(cap, base * 2.0 ** (attempt - 1))
    return step * (0.5 + 0.5 * rng())
