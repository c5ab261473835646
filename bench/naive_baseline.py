"""The naive webhook receiver the ingest benchmark compares against: Starlette + stripe SDK + one INSERT.

What a typical first version of a Stripe webhook endpoint looks like: a Starlette route reads the
body, calls ``stripe.Webhook.construct_event(body, header, secret)`` (verify, then parse into a
``StripeObject``), and stores the event with ONE ``INSERT ... ON CONFLICT DO NOTHING`` in its own
transaction per request, through a SQLAlchemy Core engine (connection pool), in Starlette's thread
pool (``run_in_threadpool``) because the driver blocks. Durability matches ours: SQLite in WAL mode
with ``synchronous=FULL`` (every commit fsynced), or PostgreSQL's default (``synchronous_commit=on``).
It writes the same ``inbox`` table (created by ``commerce-bridge db upgrade``).

Run by ``bench/ingest.py`` under uvicorn with the same settings as ``commerce-bridge ingress``
(one process, uvicorn's default loop and HTTP parser: uvloop and httptools when installed)::

    python bench/naive_baseline.py --port 8001 --database-url sqlite:///x.sqlite --secret whsec_...
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import stripe
import uvicorn
from sqlalchemy import Engine, create_engine, event, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

INSERT = text(
    "INSERT INTO inbox (source, event_id, event_type, status, received_at, body) "
    "VALUES (:source, :event_id, :event_type, 'received', :received_at, :body) "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING id"
)


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """A pooled engine; SQLite gets WAL + synchronous=FULL + a busy timeout, like the real service.

    Pool: SQLAlchemy's default (5 + 10 overflow) on PostgreSQL; ONE connection on SQLite, which has a
    single writer anyway: more connections only make writers sleep in SQLite's busy handler (measured:
    pool 1 gave the baseline its best throughput and p99 on SQLite, so the comparison is conservative).
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=pool_size or 5, max_overflow=10)
    engine = create_engine(url, pool_size=pool_size or 1, max_overflow=0, pool_timeout=60,
                           connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    return engine


def build_app(database_url: str, secret: str, pool_size: int | None = None) -> Starlette:
    engine = make_engine(database_url, pool_size)
    # SQLite stores datetimes as text; PostgreSQL gets a timestamptz.
    as_text = database_url.startswith("sqlite")

    def store(event_id: str, event_type: str, body: bytes) -> bool:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            row = conn.execute(INSERT, {
                "source": "stripe", "event_id": event_id, "event_type": event_type, "body": body,
                "received_at": now.isoformat(sep=" ") if as_text else now,
            }).first()
        return row is not None

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            evt = stripe.Webhook.construct_event(body, request.headers.get("stripe-signature"), secret)
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid payload"}, status_code=400)
        except stripe.SignatureVerificationError:
            return JSONResponse({"ok": False, "error": "invalid signature"}, status_code=400)
        try:
            is_new = await run_in_threadpool(store, evt.id, evt.type, body)
        except Exception:
            return JSONResponse({"ok": False, "error": "store unavailable"}, status_code=503)
        return JSONResponse({"ok": True, "duplicate": not is_new, "event_id": evt.id})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--pool-size", type=int, help="connections (default: 1 on SQLite, 5 + 10 overflow on PostgreSQL)")
    a = p.parse_args()
    uvicorn.run(build_app(a.database_url, a.secret, a.pool_size), host=a.host, port=a.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
