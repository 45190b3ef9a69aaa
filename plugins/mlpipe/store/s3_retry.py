"""Retries of S3 requests until a deadline, so that an S3 outage of a stated length is survived.

Every request of the artifact store's S3 client is retried, with capped exponential backoff and
jitter, while it fails for a reason that may pass: no connection, a timeout, a dropped connection,
a transient 5xx answer (500, 502, 503, 504) or throttling. Retrying stops once
``$MLPIPE_S3_RETRY_SECONDS`` (default 120) have passed since the request's first failure; the last
wait is cut so that one attempt is made at that deadline, hence an outage that ends within
``$MLPIPE_S3_RETRY_SECONDS`` of the first failure is always survived (while S3 is down a request
is retried at least every 5 s). Any other answer (``NoSuchKey``, ``AccessDenied``, ``501
NotImplemented``, ...) is final at once. Each retry is logged as a warning with the operation,
the reason and the wait (never a credential).

It is one handler of botocore's ``needs-retry`` event, installed by :func:`install` on a client
whose own retries are turned off (``total_max_attempts=1``).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from mlpipe.core import settings

log = logging.getLogger(__name__)

FIRST_WAIT = 0.25  # seconds before the first retry; doubled each retry ...
MAX_WAIT = 5.0  # ... up to this, so a request is retried at least this often while S3 is down
TRANSIENT_STATUS = frozenset({500, 502, 503, 504, 429})  # as botocore's own retries (not 501 NotImplemented)
THROTTLING = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
                        "SlowDown", "TooManyRequestsException", "RequestLimitExceeded",
                        "RequestTimeout", "RequestTimeoutException"})
STARTED = "mlpipe_retry_started"  # key of the request context that holds the first failure's time


def retry_seconds() -> float:
    """How long a request is retried (``$MLPIPE_S3_RETRY_SECONDS``); 0 turns retries off."""
    return settings.s3_retry_seconds()


def retry_reason(response: tuple[Any, dict] | None, caught_exception: Exception | None) -> str | None:
    """Why a failed attempt is worth retrying, or None when its outcome is final (success or a 4xx)."""
    from botocore.exceptions import ConnectionError, HTTPClientError

    if isinstance(caught_exception, (ConnectionError, HTTPClientError)):
        return f"{type(caught_exception).__name__}: {caught_exception}"
    if caught_exception is not None or response is None:
        return None
    http, parsed = response
    code = parsed.get("Error", {}).get("Code", "")
    if http.status_code in TRANSIENT_STATUS or code in THROTTLING:
        return f"HTTP {http.status_code} {code}".rstrip()
    return None


def transient(error: Exception) -> bool:
    """Whether a request that failed with ``error`` (after its retries) failed for a reason that may pass."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in TRANSIENT_STATUS or error.response.get("Error", {}).get("Code") in THROTTLING
    return retry_reason(None, error) is not None


def wait(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): capped doubling, half of it jitter."""
    ceiling = min(MAX_WAIT, FIRST_WAIT * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not a secret)


class DeadlineRetry:
    """A ``needs-retry`` handler: retry a retryable failure until ``seconds`` after the request's first failure."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, attempts: int, response, caught_exception, request_dict: dict, operation,
                 **_: Any) -> float | None:
        now = time.monotonic()
        started = request_dict.setdefault("context", {}).setdefault(STARTED, now)
        reason = retry_reason(response, caught_exception)
        left = started + self.seconds - now
        if reason is None or left <= 0:
            if reason is not None and self.seconds:
                log.error("S3 %s failed after %d attempts in %.1fs: %s", operation.name, attempts,
                          now - started, reason)
            return None
        delay = min(wait(attempts), left)
        log.warning("S3 %s attempt %d failed (%s); retrying in %.2fs (until %.0fs after the first failure)",
                    operation.name, attempts, reason, delay, self.seconds)
        return delay


def install(client) -> None:
    """Make ``client`` retry as described above; its own retries must be off (``total_max_attempts=1``)."""
    client.meta.events.register("needs-retry.s3", DeadlineRetry(retry_seconds()))
