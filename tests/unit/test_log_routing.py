"""Every line of the process goes through the redacting JSON pipeline: libraries' own handlers,
DBOS's console logger, uncaught exceptions, unformattable records; and the redactor's phone, URL-encoded
e-mail, PII-key-by-words, depth and length rules (issue 9, point 7)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from commerce_bridge.logsetup import (
    DEEP,
    EMAIL,
    PHONE,
    Redactor,
    adopt_foreign_loggers,
    configure_logging,
)

PII = ("name", "phone", "address", "street", "line1", "postal_code", "email")
Configure = Callable[..., io.StringIO]


def _all_loggers() -> dict[str, logging.Logger]:
    return {n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configure logging into a StringIO; afterwards put back every logger, hook and global it changes."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {n: (list(lg.handlers), lg.level, lg.propagate) for n, lg in _all_loggers().items()}
    saved_hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook, logging.lastResort)

    def _configure(**kw: Any) -> io.StringIO:
        buf = io.StringIO()
        kw.setdefault("pii_keys", PII)
        kw.setdefault("capture_warnings", False)
        kw.setdefault("capture_uncaught", False)
        configure_logging(stream=buf, **kw)
        return buf

    yield _configure
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, lg in _all_loggers().items():
        handlers, level, propagate = saved.get(name, ([], logging.NOTSET, True))
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    sys.excepthook, threading.excepthook, sys.unraisablehook, logging.lastResort = saved_hooks
    logging.captureWarnings(False)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def assert_json_lines_without(out: str, planted: list[str]) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line is JSON
    for value in planted:
        assert value not in out, value
    return parsed


# --- the redactor's rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["+1 415 555 0123", "+14155550123", "+44 (20) 7946-0958", "+47 123.45.678",
                                   "+33 6 12 34 56 78"])
def test_international_phone_numbers_in_text_are_masked(phone: str) -> None:
    assert Redactor().redact_text(f"call {phone}, then stop") == f"call {PHONE}, then stop"


@pytest.mark.parametrize("text", ["at 2026-01-01T10:00:00+00:00", "delta +1999 cents", "x+12345678",
                                  "id +1234567890123456789"])
def test_plus_signs_that_are_not_phone_numbers_are_kept(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_url_encoded_email_is_masked() -> None:
    out = Redactor().redact_text("GET /v1/customers?q=jane.roe%40example.org&limit=1")
    assert out == f"GET /v1/customers?q={EMAIL}&limit=1"


@pytest.mark.parametrize("key", ["phone", "Phone1", "customer_phone", "shippingPhone", "Street1", "street2",
                                 "PostalCode", "postal_code", "address_line1", "first_name", "CustomerName",
                                 "billing-address", "receipt_email", "Email1"])
def test_pii_keys_match_fields_named_like_them(key: str) -> None:
    assert Redactor(PII).is_sensitive_key(key)


@pytest.mark.parametrize("key", ["username", "phones_count", "address_line1_check", "postal", "line",
                                 "streetwise", "AddressID", "emailed"])
def test_pii_keys_do_not_match_other_fields(key: str) -> None:
    assert not Redactor(PII).is_sensitive_key(key)


def test_pii_keys_named_like_them_are_redacted_inside_text() -> None:
    text = ("{'Phone1': '(415) 555-0199', 'Street1': '1600 Amphitheatre Pkwy', 'PostalCode': '94043', "
            "'shippingPhone': '020 7946 0958', 'username': 'bob', 'address_line1_check': 'pass'}")
    out = Redactor(PII).redact_text(text)
    for value in ["555-0199", "Amphitheatre", "94043", "7946"]:
        assert value not in out
    assert "'username': 'bob'" in out and "'address_line1_check': 'pass'" in out


def test_long_values_are_cut_after_redaction() -> None:
    r = Redactor(max_chars=200)
    out = r.redact("jane.roe@example.org " + "x" * 10_000 + " card 4242 4242 4242 4242")
    assert len(out) < 260 and "chars cut]" in out
    assert out.startswith(EMAIL) and out.endswith("card [CARD]")
    assert Redactor().redact("y" * 10_000) == "y" * 10_000  # no limit by default


def test_deeply_nested_fields_are_rendered_to_a_bounded_depth(configure: Configure) -> None:
    buf = configure()
    deep: list[Any] = ["jane.roe@example.org"]
    for _ in range(600):
        deep = [deep]
    structlog.get_logger("t").error("deep", payload=deep, customer={"email": "jane.roe@example.org"})
    [line] = lines(buf)
    assert DEEP in json.dumps(line) and "jane.roe" not in buf.getvalue()


# --- routing -----------------------------------------------------------------------------------------


def test_handlers_libraries_add_are_removed_and_their_records_rerouted(
        configure: Configure, capsys: pytest.CaptureFixture[str]) -> None:
    buf = configure()
    echo = logging.getLogger("sqlalchemy.engine.Engine")  # what create_engine(echo=True) does
    echo.addHandler(logging.StreamHandler(sys.stdout))
    lib = logging.getLogger("some.library")
    lib.addHandler(logging.StreamHandler(sys.stderr))
    lib.propagate = False
    quiet = logging.getLogger("some.silenced")  # silenced on purpose: no handler, no propagation
    quiet.propagate = False
    null = logging.NullHandler()
    logging.getLogger("some.polite").addHandler(null)

    adopted = adopt_foreign_loggers()

    assert {"sqlalchemy.engine.Engine", "some.library"} <= set(adopted)
    assert null in logging.getLogger("some.polite").handlers
    echo.warning("INSERT INTO customers VALUES ('jane.roe@example.org')")
    lib.error("card 4242-4242-4242-4242")
    quiet.info("not shown")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    a, b = lines(buf)
    assert a["logger"] == "sqlalchemy.engine.Engine" and a["event"] == f"INSERT INTO customers VALUES ('{EMAIL}')"
    assert b["logger"] == "some.library" and b["event"] == "card [CARD]"


def test_a_logger_without_handlers_that_does_not_propagate_still_writes_json(configure: Configure) -> None:
    buf = configure()
    lg = logging.getLogger("some.orphan")
    lg.propagate = False
    lg.warning("mail jane.roe@example.org")
    lg.info("below logging's last-resort level")
    [line] = lines(buf)
    assert line["event"] == f"mail {EMAIL}"


def test_stripe_request_bodies_are_not_logged_even_at_debug(configure: Configure) -> None:
    buf = configure(level="DEBUG")
    logging.getLogger("stripe").debug("Post details post_data=email=jane.roe%40example.org&phone=%2B1415")
    logging.getLogger("stripe").info("Request to Stripe api method=post url=/v1/customers")
    [line] = lines(buf)
    assert line["event"].startswith("Request to Stripe api")


def test_stripe_request_lines_are_written_only_at_debug(configure: Configure) -> None:
    buf = configure()  # INFO: a line per Stripe request costs CPU and can carry a searched e-mail
    logging.getLogger("stripe").info("Request to Stripe api method=get url=/v1/customers/search")
    logging.getLogger("stripe").warning("Stripe API error received")
    [line] = lines(buf)
    assert line["event"] == "Stripe API error received"


def test_uvicorn_colour_copy_of_the_message_is_dropped(configure: Configure) -> None:
    buf = configure()
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7,
                                            extra={"color_message": "Started \x1b[36m%d\x1b[0m"})
    [line] = lines(buf)
    assert line["event"] == "Started server process [7]" and "color_message" not in line


def test_exception_hooks_are_installed_by_default_only_when_lines_go_to_a_standard_stream(
        configure: Configure) -> None:
    before = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    configure(capture_uncaught=None)  # a StringIO, like a log file: tracebacks do not land between lines
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == before
    configure_logging(stream=sys.stderr, capture_warnings=False)
    assert sys.excepthook is not before[0] and threading.excepthook is not before[1]
    assert sys.unraisablehook is not before[2]


def test_exception_hooks_chain_to_a_hook_installed_before(configure: Configure) -> None:
    seen: list[str] = []
    threading.excepthook = lambda args: seen.append(str(args.exc_value))
    configure(capture_uncaught=True)
    buf = configure(capture_uncaught=True)  # twice: still one line per exception, one call of the old hook

    def fail() -> None:
        raise ValueError("no card for jane.roe@example.org")

    t = threading.Thread(target=fail, name="worker-7")
    t.start()
    t.join()
    assert seen == ["no card for jane.roe@example.org"]
    [line] = lines(buf)
    assert line["logger"] == "commerce_bridge.uncaught" and line["in_thread"] == "worker-7"
    assert "ValueError: no card for [EMAIL]" in line["exception"]


# --- real processes ----------------------------------------------------------------------------------


def test_dbos_keeps_logging_through_our_handler_once_constructed(tmp_path: Path) -> None:
    """DBOS() adds a plain-text console handler to the ``dbos`` logger when it has none; a failed
    serialisation then printed the whole input (e-mails, phones, cards) as one plain line on stderr."""
    result = run_script(f"""
        import sys
        from dbos import DBOS
        from dbos._serialization import DefaultSerializer
        from commerce_bridge.logsetup import configure_logging
        configure_logging("INFO", pii_keys={list(PII)!r}, stream=sys.stdout)
        DBOS(config={{"name": "cb-log-test", "system_database_url": "sqlite:///{tmp_path}/sys.sqlite",
                      "log_level": "WARNING"}})
        deep = []
        for _ in range(600):
            deep = [deep]
        event = {{"receipt_email": "jane.roe@example.org", "phone": "020 7946 0958", "Street1": "1 Main St",
                  "note": "card 4242 4242 4242 4242, call +44 20 7946 0958", "deep": deep}}
        try:
            DefaultSerializer().serialize({{"args": (event,)}})
        except RecursionError:
            pass
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    parsed = assert_json_lines_without(result.stdout, ["jane.roe", "7946", "Main St", "4242 4242"])
    [line] = [p for p in parsed if p["logger"] == "dbos"]
    assert line["event"].startswith("Error serializing object:") and "RecursionError" in line["exception"]
    assert len(line["event"]) < 20_000


def test_uncaught_exceptions_are_logged_as_redacted_json(tmp_path: Path) -> None:
    result = run_script("""
        import gc, logging, sys, threading
        from commerce_bridge.logsetup import configure_logging
        configure_logging("INFO", stream=sys.stdout)
        logging.getLogger("some.library").error("%d orders for %s", "jane.roe@example.org")  # wrong arguments

        def fail():
            raise ValueError("declined 4242 4242 4242 4242 for jane.roe@example.org")
        t = threading.Thread(target=fail)
        t.start()
        t.join()

        class Leaky:
            def __repr__(self):
                return "<Leaky owner=billing@shop.example>"
            def __del__(self):
                raise OSError("cannot flush +14155550123")
        Leaky()
        gc.collect()
        raise RuntimeError("giving up on billing@shop.example")
        """, tmp_path)
    assert result.returncode == 1
    assert result.stderr == ""
    parsed = assert_json_lines_without(result.stdout, ["4242 4242", "jane.roe", "billing@", "4155550123"])
    unformattable, thread, unraisable, main = parsed
    # a record that cannot be formatted: logging's own report would print its message and arguments
    assert unformattable.pop("timestamp").endswith("Z")
    assert unformattable == {"event": "logging.record_failed", "level": "error", "logger": "some.library",
                             "error": "TypeError"}
    assert [p["logger"] for p in (thread, unraisable, main)] == ["commerce_bridge.uncaught"] * 3
    assert "ValueError" in thread["exception"] and thread["level"] == "error"
    assert unraisable["event"].startswith("Exception ignored") and "OSError" in unraisable["exception"]
    assert main["level"] == "critical" and f"RuntimeError: giving up on {EMAIL}" in main["exception"]

