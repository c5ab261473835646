"""What the HTTP connectors share: Retry-After in both of its forms, transport failures as UpstreamUnavailable."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from commerce_bridge.errors import UpstreamUnavailable
from commerce_bridge.http_errors import retry_after_s, transport_errors

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("2", 2.0), ("0.5", 0.5), ("-3", 0.0),                      # delay-seconds (never negative)
    ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),                   # an HTTP date, 30 s from now
    ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),                    # a date in the past: at once
    (None, None), ("soon", None), ("", None),                  # absent or unreadable
])
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after_s(value, now=NOW) == seconds


@pytest.mark.parametrize(("failure", "said"), [
    (httpx.ReadTimeout("read timed out"), "ERP timed out: read timed out"),
    (httpx.ConnectError("connection refused"), "ERP connection failed: ConnectError: connection refused"),
])
def test_transport_failures_become_upstream_unavailable_naming_the_system(failure: Exception, said: str) -> None:
    with pytest.raises(UpstreamUnavailable) as info, transport_errors("ERP"):
        raise failure
    assert info.value.message == said and info.value.__cause__ is failure


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), transport_errors(""):
        raise KeyError("not a transport failure")
