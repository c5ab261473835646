"""Logging: real JSON lines from structlog and stdlib loggers, run context, and redaction of sensitive data."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_bridge.logsetup import (
    Redactor,
    bind_run_context,
    configure_logging,
    log_context,
    luhn_valid,
    reset_run_context,
)

PII = ("phone", "name", "address_line1")
Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configure logging to a fresh StringIO; restore the global logging state afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    named = [
        "uvicorn",
        "uvicorn.error",
        "uvicorn.access",
        "dbos",
        "sqlalchemy",
        "httpx",
        "httpcore",
        "py.warnings",
    ]
    saved_named = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level) for n in named}
    saved_last_resort = logging.lastResort

    def _configure(**kw: Any) -> io.StringIO:
        buf = io.StringIO()
        kw.setdefault("pii_keys", PII)
        kw.setdefault("capture_warnings", False)
        configure_logging(stream=buf, **kw)
        return buf

    yield _configure
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)
    for n, (handlers, level) in saved_named.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.setLevel(level)
    logging.lastResort = saved_last_resort
    logging.captureWarnings(False)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    raw = buf.getvalue()
    assert raw.endswith("\n")
    return [json.loads(line) for line in raw.splitlines()]


SECRETS = [
    "hunter2-very-secret",
    "sk_live_51HxYzAbCdEfGhIjKlMnOp",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_9a8b7c6d5e4f3g2h",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "eyJhbGciOiJIUzI1NiJ9.payload.sig",
    "s3ss10n-c00kie",
]


def test_structlog_lines_are_json_with_timestamp_level_event_logger(configure: Configure) -> None:
    buf = configure()
    structlog.get_logger("commerce_bridge.engine").info("step.started", attempt=2)
    structlog.get_logger("commerce_bridge.engine").debug("not shown at INFO")
    [line] = lines(buf)
    assert line["event"] == "step.started" and line["attempt"] == 2
    assert line["level"] == "info" and line["logger"] == "commerce_bridge.engine"
    assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"


def test_secret_keys_are_redacted_recursively(configure: Configure) -> None:
    buf = configure()
    structlog.get_logger("t").info(
        "calling upstream",
        password=SECRETS[0],
        headers={"Authorization": f"Bearer {SECRETS[5]}", "Cookie": SECRETS[6], "Accept": "json"},
        config=[{"stripe_api_key": SECRETS[1]}, {"nested": {"webhook_secret": SECRETS[4], "apiKey": "k"}}],
        Stripe_Signature="t=1,v1=abc",
        private_key="-----BEGIN",
        refresh_token="tok",
    )
    raw = buf.getvalue()
    for s in [*SECRETS, "t=1,v1=abc", "-----BEGIN", '"tok"', '"k"']:
        assert s not in raw
    [line] = lines(buf)
    assert line["headers"] == {"Authorization": "[REDACTED]", "Cookie": "[REDACTED]", "Accept": "json"}
    assert line["config"][1]["nested"]["webhook_secret"] == "[REDACTED]"


def test_stripe_keys_inside_any_string_are_redacted(configure: Configure) -> None:
    buf = configure()
    structlog.get_logger("t").warning(
        f"bad key {SECRETS[1]} used", note=f"rotated {SECRETS[3]} and {SECRETS[4]}", items=[SECRETS[2]]
    )
    raw = buf.getvalue()
    assert not any(s in raw for s in SECRETS[1:5])
    assert lines(buf)[0]["event"] == "bad key [SECRET] used"


@pytest.mark.parametrize(
    "card",
    ["4242424242424242", "4242 4242 4242 4242", "4000-0566-5566-5556", "378282246310005", "6011111111111117"],
)
def test_card_numbers_that_pass_luhn_are_replaced(configure: Configure, card: str) -> None:
    buf = configure()
    structlog.get_logger("t").info(
        f"paid with {card}.", payload={"pan": card, "n": int(card.replace(" ", "").replace("-", ""))}
    )
    raw = buf.getvalue()
    assert card not in raw and card.replace(" ", "").replace("-", "") not in raw
    [line] = lines(buf)
    assert line["event"] == "paid with [CARD]." and line["payload"] == {"pan": "[CARD]", "n": "[CARD]"}


def test_numbers_that_fail_luhn_are_kept(configure: Configure) -> None:
    assert not luhn_valid("4242424242424241")
    buf = configure()
    structlog.get_logger("t").info("order 4242424242424241", amount_minor=1999, ts=1764220800123 + 1)
    [line] = lines(buf)
    assert line["event"] == "order 4242424242424241" and line["amount_minor"] == 1999


def test_card_hidden_in_a_longer_separated_run_is_found() -> None:
    assert Redactor().redact_text("qty 1 4242 4242 4242 4242 ok") == "qty 1 [CARD] ok"


def test_emails_are_fully_masked(configure: Configure) -> None:
    buf = configure()
    structlog.get_logger("t").info("customer jane.doe+vip@shop.example.co.uk synced", to=["a.b@c.io"])
    raw = buf.getvalue()
    assert "jane" not in raw and "shop.example" not in raw and "c.io" not in raw
    assert lines(buf)[0]["event"] == "customer [EMAIL] synced"


def test_configured_pii_keys_are_redacted_as_fields_and_in_text(configure: Configure) -> None:
    buf = configure()
    structlog.get_logger("t").info(
        "address {'address_line1': '1 Main St', 'city': 'Oslo'} phone=+4712345678",
        customer={
            "Name": "Jane Doe",
            "phone": "+47 123 45 678",
            "address_line1": "1 Main St",
            "city": "Oslo",
        },
        username="keep-me",
    )
    raw = buf.getvalue()
    for s in ["Jane", "Main St", "12345678", "123 45 678"]:
        assert s not in raw
    [line] = lines(buf)
    assert line["customer"]["city"] == "Oslo" and line["username"] == "keep-me"


def test_stdlib_records_go_through_the_same_renderer_and_redaction(configure: Configure) -> None:
    buf = configure()
    with log_context(run_id="run-1"):
        logging.getLogger("uvicorn.error").warning(
            "login for %s with token=%s", "ops@bridge.example", SECRETS[0], extra={"api_key": SECRETS[2]}
        )
        logging.getLogger("dbos").info("card %s declined", "4242-4242-4242-4242")
        logging.getLogger("sqlalchemy.engine").info("SELECT secret stuff")  # below sqlalchemy's WARNING
        logging.getLogger("sqlalchemy.pool").warning("pool overflow")
    raw = buf.getvalue()
    assert (
        "ops@bridge" not in raw and SECRETS[0] not in raw and SECRETS[2] not in raw and "4242-4242" not in raw
    )
    first, second, third = lines(buf)
    assert first["logger"] == "uvicorn.error" and first["level"] == "warning" and first["run_id"] == "run-1"
    assert first["event"] == "login for [EMAIL] with token=[REDACTED]" and first["api_key"] == "[REDACTED]"
    assert second["event"] == "card [CARD] declined"
    assert third["logger"] == "sqlalchemy.pool" and "SELECT" not in raw


def test_exceptions_and_tracebacks_are_redacted(configure: Configure) -> None:
    buf = configure()
    log = structlog.get_logger("t")
    try:
        raise RuntimeError(
            f"upstream said {{'password': '{SECRETS[0]}', 'email': 'x@y.org'}} for {SECRETS[1]}"
        )
    except RuntimeError:
        log.exception("step.failed")
        logging.getLogger("dbos").exception("workflow %s failed", "wf-1")
    raw = buf.getvalue()
    assert SECRETS[0] not in raw and SECRETS[1] not in raw and "x@y.org" not in raw
    a, b = lines(buf)
    assert "Traceback" in a["exception"] and "RuntimeError" in a["exception"]
    assert "Traceback" in b["exception"] and b["event"] == "workflow wf-1 failed"


def test_run_context_is_on_every_line_inside_and_gone_after(configure: Configure) -> None:
    buf = configure()
    log = structlog.get_logger("t")
    tokens = bind_run_context(source="stripe", event_id="evt_1")
    with log_context(run_id="stripe:evt_1:refund", step_id="create_refund", extra_none=None):
        log.info("inside")
        logging.getLogger("uvicorn.error").info("stdlib inside")
    log.info("after step")
    reset_run_context(tokens)
    log.info("outside")
    a, b, c, d = lines(buf)
    for line in (a, b):
        assert (line["source"], line["event_id"], line["run_id"], line["step_id"]) == (
            "stripe",
            "evt_1",
            "stripe:evt_1:refund",
            "create_refund",
        )
        assert "extra_none" not in line
    assert c["source"] == "stripe" and "run_id" not in c
    assert "source" not in d


async def test_asyncio_tasks_keep_their_own_context(configure: Configure) -> None:
    buf = configure()
    log = structlog.get_logger("t")

    async def run(run_id: str) -> None:
        with log_context(run_id=run_id):
            await asyncio.sleep(0)
            log.info("tick")

    await asyncio.gather(run("a"), run("b"), run("c"))
    assert sorted(line["run_id"] for line in lines(buf)) == ["a", "b", "c"]


def test_console_mode_is_redacted_too(configure: Configure) -> None:
    buf = configure(json=False, level="DEBUG")
    structlog.get_logger("t").debug("mail bob@example.com", password=SECRETS[0])
    raw = buf.getvalue()
    assert "[EMAIL]" in raw and "bob@" not in raw and SECRETS[0] not in raw


def test_unknown_level_is_rejected(configure: Configure) -> None:
    with pytest.raises(ValueError):
        configure(level="LOUD")


def test_warnings_are_routed_when_captured(configure: Configure) -> None:
    buf = configure(capture_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated key {SECRETS[2]}", UserWarning, stacklevel=1)
    [line] = lines(buf)
    assert line["logger"] == "py.warnings" and SECRETS[2] not in buf.getvalue()


def test_a_real_process_writes_redacted_json_lines_to_stdout() -> None:
    script = textwrap.dedent(
        f"""
        import logging, sys, structlog
        from commerce_bridge.logsetup import configure_logging, log_context
        configure_logging(level="INFO", pii_keys=["phone"], stream=sys.stdout)
        with log_context(source="clarity", event_id="e-9"):
            structlog.get_logger("commerce_bridge.x").info(
                "sync", phone="+1 202 555 0101", key="{SECRETS[1]}", card="4242 4242 4242 4242"
            )
            logging.getLogger("uvicorn.access").info('127.0.0.1 "GET /?email=a@b.co" 200')
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    parsed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["logger"] for p in parsed] == ["commerce_bridge.x", "uvicorn.access"]
    assert all(p["source"] == "clarity" and p["event_id"] == "e-9" for p in parsed)
    for s in ["202 555", SECRETS[1], "4242", "a@b.co"]:
        assert s not in out.stdout


# --- properties ------------------------------------------------------------------------------------


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


def grouped(body: str, sep: str) -> str:
    card = with_check_digit(body)
    return sep.join(card[i : i + 4] for i in range(0, len(card), 4))


cards = st.builds(
    grouped,
    st.text("0123456789", min_size=12, max_size=18),
    st.sampled_from(["", " ", "-"]),
)
filler = st.text(st.sampled_from(list("abcXYZ .,:;=/'\"()[]{}\n")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(filler, cards, filler)
def test_any_luhn_card_in_text_is_removed(before: str, card: str, after: str) -> None:
    out = Redactor().redact_text(before + card + after)
    digits = card.replace(" ", "").replace("-", "")
    assert card not in out and digits not in out.replace(" ", "").replace("-", "")


@settings(max_examples=200, deadline=None)
@given(
    filler,
    st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "whsec_"]),
    st.text("abcdefXYZ0123456789", min_size=8, max_size=40),
    filler,
)
def test_any_stripe_secret_in_text_is_removed(before: str, prefix: str, tail: str, after: str) -> None:
    out = Redactor().redact_text(f"{before} {prefix}{tail} {after}")
    assert prefix + tail not in out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_redaction_is_idempotent(text: str) -> None:
    r = Redactor(PII)
    once = r.redact_text(text)
    assert r.redact_text(once) == once
