"""The reconciliation job written for DuckDB: the comparison arm of bench/reconcile.py.

The same rules as ``commerce_bridge.reconcile.job`` (polars), expressed as SQL over Parquet files; the
bench asserts both give the same statuses, exceptions, journal totals and proof. It stays here, not in
``src/``, because polars won the measurement (docs/performance.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from commerce_bridge.domain.currency import minor_digits
from commerce_bridge.reconcile.reference import Summary
from commerce_bridge.reconcile.rules import (
    CHARGE_TYPES,
    COUNTER_ROLE,
    DISPUTE_CATEGORIES,
    EXCEPTION_KINDS,
    FEE_TYPES,
    RATE_DECIMALS,
    REFUND_TYPES,
    STRIPE_TYPES,
    unit_factors,
)


def _list(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def sql_statements(data: Path, source: str = "parquet") -> list[str]:
    """The job's statements over ``data``/<table>.parquet, or <table>.ndjson when ``source`` is "records"."""
    factors = ", ".join(f"('{c}', {m}, {d}, {minor_digits(c)})" for c, (m, d) in sorted(unit_factors().items()))
    counter = " ".join(f"WHEN '{c}' THEN '{r}'" for c, r in COUNTER_ROLE.items())
    meaning = " ".join(f"WHEN '{k}' THEN '{v.meaning.replace(chr(39), chr(39) * 2)}'" for k, v in EXCEPTION_KINDS.items())
    fixes = " ".join(f"WHEN '{k}' THEN '{v.suggested_fix.replace(chr(39), chr(39) * 2)}'"
                     for k, v in EXCEPTION_KINDS.items())
    p = {name: f"read_parquet('{data / (name + '.parquet')}')" if source == "parquet" else
         f"read_json('{data / (name + '.ndjson')}', format='newline_delimited', columns={_columns(name)})"
         for name in ("transactions", "payouts", "orders", "returns", "disputes")}
    return [
        f"CREATE TEMP TABLE factors(code VARCHAR, mul BIGINT, div BIGINT, digits INTEGER); "
        f"INSERT INTO factors VALUES {factors}",
        f"""CREATE TEMP TABLE pay AS SELECT x.payout_id, upper(x.currency) AS currency,
              x.amount * f.mul // f.div AS p_minor FROM {p['payouts']} x LEFT JOIN factors f ON f.code = lower(x.currency)""",
        f"""CREATE TEMP TABLE lines AS
        WITH t AS (
          SELECT x.*, lower(x.currency) AS cur, lower(coalesce(x.source_currency, x.currency)) AS src_cur,
                 abs(coalesce(x.source_amount, x.amount)) AS src_amount,
                 CASE WHEN x.reporting_category IN ({_list(DISPUTE_CATEGORIES)}) THEN 'dispute'
                      WHEN x.type IN ({_list(CHARGE_TYPES)}) THEN 'charge'
                      WHEN x.type IN ({_list(REFUND_TYPES)}) THEN 'refund'
                      WHEN x.type IN ({_list(FEE_TYPES)}) THEN 'fee'
                      WHEN x.type = 'payout' THEN 'payout'
                      WHEN x.type IN ({_list(STRIPE_TYPES)}) THEN 'other'
                      ELSE 'unknown' END AS category
          FROM {p['transactions']} x),
        j AS (
          SELECT t.*, t.amount * f.mul // f.div AS amount_minor, t.fee * f.mul // f.div AS fee_minor,
                 t.net * f.mul // f.div AS net_minor, t.src_amount * s.mul // s.div AS src_minor,
                 f.digits, s.digits AS sdigits,
                 o.amount_minor AS o_amount, lower(o.currency) AS o_currency, o.fee_minor AS o_fee,
                 o.order_key IS NOT NULL AS o_found,
                 r.amount_minor AS r_amount, lower(r.currency) AS r_currency, r.refund_id IS NOT NULL AS r_found,
                 d.dispute_id IS NOT NULL AS d_found, pay.p_minor
          FROM t LEFT JOIN factors f ON f.code = t.cur LEFT JOIN factors s ON s.code = t.src_cur
                 LEFT JOIN {p['orders']} o ON o.order_key = t.order_key
                 LEFT JOIN {p['returns']} r ON r.refund_id = t.source_id
                 LEFT JOIN (SELECT DISTINCT dispute_id FROM {p['disputes']}) d ON d.dispute_id = t.source_id
                 LEFT JOIN pay ON pay.payout_id = t.payout_id),
        k AS (
          SELECT *, min(id) OVER (PARTITION BY CASE WHEN category = 'charge' AND o_found THEN order_key END)
                    AS first_id FROM j),
        c AS (
          SELECT *, CASE
            WHEN category = 'charge' AND NOT o_found THEN 'charge_without_order'
            WHEN category = 'charge' AND id <> first_id THEN 'duplicate_charge'
            WHEN category = 'charge' AND src_cur <> o_currency THEN 'currency_mismatch'
            WHEN category = 'charge' AND src_minor <> o_amount THEN 'amount_mismatch'
            WHEN category = 'charge' AND o_fee IS NOT NULL AND o_fee <> fee_minor THEN 'fee_mismatch'
            WHEN category = 'refund' AND NOT r_found THEN 'refund_without_return'
            WHEN category = 'refund' AND src_cur <> r_currency THEN 'currency_mismatch'
            WHEN category = 'refund' AND src_minor <> r_amount THEN 'amount_mismatch'
            WHEN category = 'dispute' AND NOT d_found THEN 'dispute_without_record'
            WHEN category = 'payout' AND (p_minor IS NULL OR -p_minor <> amount_minor) THEN 'payout_mismatch'
            WHEN category = 'unknown' THEN 'unknown_type'
            WHEN net <> amount - fee THEN 'fee_mismatch' END AS kind FROM k),
        e AS (
          SELECT *, CAST(src_minor AS HUGEINT)
                    * CAST(split_part(exchange_rate, '.', 1) || rpad(split_part(exchange_rate, '.', 2),
                                                                    {RATE_DECIMALS}, '0') AS BIGINT)
                    * CAST(pow(10, greatest(digits - sdigits, 0)) AS BIGINT) AS num,
                 CAST(10 ** {RATE_DECIMALS} AS HUGEINT) * CAST(pow(10, greatest(sdigits - digits, 0)) AS BIGINT)
                    AS den
          FROM c),
        q AS (SELECT *, num // den AS q0 FROM e)
        SELECT id, payout_id, type, category, kind, amount_minor, fee_minor, net_minor, upper(cur) AS currency,
               src_minor, upper(src_cur) AS src_currency, order_key,
               CASE category WHEN 'charge' THEN o_amount WHEN 'refund' THEN r_amount END AS expected_minor,
               upper(CASE category WHEN 'charge' THEN o_currency WHEN 'refund' THEN r_currency END)
                 AS expected_currency,
               CASE WHEN kind IS NULL AND category IN ('charge', 'refund') AND exchange_rate IS NOT NULL
                         AND src_cur <> cur
                    THEN amount_minor - CASE WHEN amount_minor >= 0 THEN 1 ELSE -1 END
                         * CAST(q0 + CASE WHEN 2 * (num - q0 * den) > den
                                OR (2 * (num - q0 * den) = den AND q0 % 2 = 1) THEN 1 ELSE 0 END AS BIGINT)
                    ELSE 0 END AS fx_minor
        FROM q""",
        f"""CREATE TEMP TABLE journal AS
        WITH b AS (SELECT * FROM lines WHERE category <> 'payout'),
        u AS (
          SELECT payout_id, 'clearing' AS role, id AS ref, net_minor AS amount_minor, currency FROM b
          UNION ALL SELECT payout_id, CASE WHEN kind IS NOT NULL THEN 'suspense'
                                      ELSE CASE category {counter} ELSE 'adjustments' END END,
                           id, -(net_minor + fee_minor - fx_minor), currency FROM b
          UNION ALL SELECT payout_id, 'fx', id, -fx_minor, currency FROM b
          UNION ALL SELECT payout_id, CASE WHEN category = 'dispute' THEN 'dispute_fees' ELSE 'fees' END,
                           id, fee_minor, currency FROM b
          UNION ALL SELECT payout_id, 'bank', payout_id, p_minor, currency FROM pay
          UNION ALL SELECT payout_id, 'clearing', payout_id, -p_minor, currency FROM pay)
        SELECT * FROM u WHERE amount_minor <> 0""",
        """CREATE TEMP TABLE proof AS
        WITH n AS (SELECT payout_id, sum(net_minor) AS net_sum,
                          sum(net_minor) FILTER (WHERE kind IS NULL) AS matched_net,
                          sum(net_minor) FILTER (WHERE kind IS NOT NULL) AS exception_net
                   FROM lines WHERE category <> 'payout' GROUP BY payout_id),
        x AS (SELECT payout_id, count(*) AS row_exceptions FROM lines WHERE kind IS NOT NULL GROUP BY payout_id),
        jb AS (SELECT payout_id, sum(amount_minor) FILTER (WHERE role = 'clearing') AS clearing_balance,
                      sum(amount_minor) AS journal_balance FROM journal GROUP BY payout_id)
        SELECT pay.payout_id, pay.p_minor AS payout_amount, coalesce(net_sum, 0) AS net_sum,
               coalesce(matched_net, 0) AS matched_net, coalesce(exception_net, 0) AS exception_net,
               coalesce(clearing_balance, 0) AS clearing_balance, coalesce(journal_balance, 0) AS journal_balance,
               coalesce(row_exceptions, 0) + CASE WHEN coalesce(net_sum, 0) = p_minor THEN 0 ELSE 1 END AS exceptions
        FROM pay LEFT JOIN n USING (payout_id) LEFT JOIN x USING (payout_id) LEFT JOIN jb USING (payout_id)""",
        f"""CREATE TEMP TABLE exceptions AS
        SELECT kind, id AS ref, payout_id,
               printf('%s: %s %d %s (source %d %s; expected %s %s)', CASE kind {meaning} END, type, amount_minor,
                      currency, src_minor, src_currency, coalesce(CAST(expected_minor AS VARCHAR), '-'),
                      coalesce(expected_currency, '-')) AS reason,
               CASE kind {fixes} END AS suggested_fix
        FROM lines WHERE kind IS NOT NULL
        UNION ALL
        SELECT 'payout_mismatch', payout_id, payout_id,
               printf('the payout''s transactions net %d but the payout is %d', net_sum, payout_amount),
               CASE 'payout_mismatch' {fixes} END
        FROM proof WHERE net_sum <> payout_amount
        UNION ALL
        SELECT 'order_without_charge', o.order_key, NULL, 'an order paid in Clarity with no Stripe charge',
               CASE 'order_without_charge' {fixes} END
        FROM {p['orders']} o ANTI JOIN (SELECT DISTINCT order_key FROM lines WHERE category = 'charge'
                                        AND order_key IS NOT NULL) c ON c.order_key = o.order_key""",
    ]


_INTS = {"amount", "fee", "net", "source_amount", "amount_minor", "fee_minor"}
_FIELDS = {
    "transactions": ("id", "payout_id", "type", "reporting_category", "amount", "fee", "net", "currency",
                     "exchange_rate", "source_id", "source_type", "source_amount", "source_currency", "order_key"),
    "payouts": ("payout_id", "amount", "currency"),
    "orders": ("order_key", "amount_minor", "currency", "fee_minor"),
    "returns": ("refund_id", "order_key", "amount_minor", "currency"),
    "disputes": ("dispute_id", "order_key"),
}


def _columns(name: str) -> str:
    return "{" + ", ".join(f"'{c}': '{'BIGINT' if c in _INTS else 'VARCHAR'}'" for c in _FIELDS[name]) + "}"


def write_records(records: dict[str, list[dict[str, Any]]], data: Path) -> None:
    """Hand Python records to DuckDB the way it reads them without pyarrow: one NDJSON file per table."""
    for name, rows in records.items():
        with (data / f"{name}.ndjson").open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row))
                fh.write("\n")


def run(con: Any, data: Path, source: str = "parquet") -> None:
    for statement in sql_statements(data, source):
        con.execute(statement)


def summary(con: Any) -> Summary:
    out = Summary()
    out.status = {i: (c, k or "") for i, c, k in con.execute("SELECT id, category, kind FROM lines").fetchall()}
    out.exceptions = {(k, r, p or "") for k, r, p in con.execute("SELECT kind, ref, payout_id FROM exceptions").fetchall()}
    out.journal = {(p, r): int(v) for p, r, v in con.execute(
        "SELECT payout_id, role, sum(amount_minor) FROM journal GROUP BY ALL HAVING sum(amount_minor) <> 0").fetchall()}
    rows = con.execute("SELECT payout_id, payout_amount, net_sum, matched_net, clearing_balance, journal_balance, "
                       "exceptions FROM proof").fetchall()
    out.proof = {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                        r[2] == r[1] and r[4] == 0 and r[5] == 0 and r[6] == 0) for r in rows}
    return out
