"""`make demo`'s command in a real terminal (tmux) 80 and 200 columns wide: it reads well, ends by itself, exits 0.

Money goes back on four of its orders (a return refunded in Clarity, a partial refund in the Stripe Dashboard, a
dispute won and one lost); the second table shows each system's records of it, checked by the demo itself.
Both terminals run at once (one demo each, about 15 s apiece on the 2-core CI machine). Where tmux is
not installed the same command runs on a pipe with ``COLUMNS`` set, which Rich honours the same way;
the width checks then hold for the pipe's output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import bridge_env

pytestmark = pytest.mark.slow
TMUX = shutil.which("tmux")
EXIT_MARK = "DEMO-EXIT="
DEMO = [sys.executable, "-m", "commerce_bridge.entrypoints.cli", "demo", "--orders", "8", "--timeout", "240"]


class Terminal:
    """A detached tmux session of a given size (its own server socket), running one command."""

    def __init__(self, width: int, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.socket = f"cb-demo-{uuid.uuid4().hex[:8]}"
        self.width = width
        self.env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        script = cwd / f"run-{width}.sh"
        exports = "".join(f"export {k}={_quote(v)}\n" for k, v in env.items() if k.startswith(("CB_", "PATH")))
        # the pane's size is the only width: no COLUMNS/LINES inherited from wherever the tests run
        script.write_text(f"unset COLUMNS LINES\n{exports}cd {_quote(str(cwd))}\n{' '.join(map(_quote, command))}\n"
                          f"echo {EXIT_MARK}$?\nsleep 600\n")
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "demo", "-x", str(width), "-y", "50",
                   "bash", str(script))
        self._tmux("set-option", "-g", "history-limit", "10000")

    def _tmux(self, *args: str) -> str:
        assert TMUX is not None
        return subprocess.run([TMUX, "-L", self.socket, *args], env=self.env, capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def screen(self) -> str:
        """Everything the terminal showed, scrollback included, lines the terminal wrapped joined again."""
        return self._tmux("capture-pane", "-p", "-J", "-t", "demo", "-S", "-", "-E", "-")

    def close(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@contextmanager
def demo_in_terminals(tmp_path: Path, runs: dict[int, list[str]]) -> Iterator[dict[int, tuple[int, str]]]:
    """Run the demo once per width at the same time; yields {width: (exit code, what the screen showed)}."""
    env = {**bridge_env(), "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    results: dict[int, tuple[int, str]] = {}
    if TMUX is None:  # the same demo on a pipe: Rich lays it out for COLUMNS
        procs = {w: subprocess.Popen([*DEMO, *extra], env={**env, "COLUMNS": str(w)}, cwd=tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for w, extra in runs.items()}
        for w, proc in procs.items():
            out, _ = proc.communicate(timeout=300)
            results[w] = (proc.returncode, out)
        yield results
        return
    terminals = {w: Terminal(w, [*DEMO, *extra], env, tmp_path) for w, extra in runs.items()}
    try:
        deadline = time.monotonic() + 300
        while len(results) < len(terminals) and time.monotonic() < deadline:
            for w, term in terminals.items():
                screen = term.screen()
                found = re.search(rf"^{EXIT_MARK}(\d+)$", screen, re.MULTILINE)
                if found and w not in results:
                    results[w] = (int(found.group(1)), screen)
            time.sleep(0.5)
        for w, term in terminals.items():
            results.setdefault(w, (-1, term.screen()))  # still running after 300 s: the assertions say so
        yield results
    finally:
        for term in terminals.values():
            term.close()


def _table(screen: str) -> list[str]:
    """The final table's lines: from its title to the line after its last row."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if "What happened in each system" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("bridge idle") or "still busy" in line)
    return lines[start:end]


def _cells(table: list[str], title: str) -> dict[str, dict[str, str]]:
    """The table titled ``title``: {order key: {column: cell text}}, each cell's wrapped lines joined.

    Columns are cut where the header's names start (the table's columns are left-aligned).
    """
    start = next(i for i, line in enumerate(table) if title in line)
    header = table[start + 1]
    words = list(re.finditer(r"\S+", header))  # each column's name is one word
    names, starts = [w.group() for w in words], [w.start() for w in words]
    rows: dict[str, dict[str, list[str]]] = {}
    key = ""
    for line in table[start + 3:]:  # title, header, rule
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        key = cells[0] or key
        row = rows.setdefault(key, {name: [] for name in names})
        for name, cell in zip(names, cells, strict=True):
            if cell:
                row[name].append(cell)
    return {k: {name: " ".join(parts) for name, parts in row.items()} for k, row in rows.items()}


def test_demo_reads_well_at_80_and_200_columns_and_judges_an_idle_bridge(tmp_path: Path) -> None:
    with demo_in_terminals(tmp_path, {80: [], 200: ["--wide"]}) as results:
        pass
    (code80, narrow), (code200, wide) = results[80], results[200]
    assert code80 == 0, narrow[-4000:]
    assert code200 == 0, wide[-4000:]

    # 80 columns: no line wider than the terminal (capture-pane -J joins what the terminal had to wrap)
    too_wide = [line for line in narrow.splitlines() if len(line.rstrip()) > 80]
    assert too_wide == [], "\n".join(too_wide)
    table = _table(narrow)
    assert not any("…" in line for line in table), "\n".join(table)  # nothing cut short
    header = next(line for line in table if line.lstrip().startswith("order"))
    assert header.split() == ["order", "scenario", "total", "Clarity", "Stripe", "ok"]
    text = "\n".join(table)
    # money as people write it, with the currency's own decimals: 1 x 1500 JPY, 3 x 4.250 KWD, 2 x 19.99 EUR
    for amount in ("$33.00", "¥1,500", "KWD 12.750", "€39.98"):
        assert amount in text, (amount, text)
    assert "requires" in text and "payment" in text  # the declined order's Stripe status, wrapped between words

    # the demo judged only once the bridge had nothing queued or running, and said so
    assert "bridge idle, so judged now: no run queued or running" in narrow
    assert "every order reached its expected end state" in narrow
    for kind in ("paid (JPY)", "paid (KWD)", "declined", "3-D Secure", "manual capture", "storefront-charged"):
        assert kind in text, kind

    # money going back: each system's records, exact to the minor unit, each row judged by the demo
    assert "wrong:" not in narrow
    assert "Payouts, reconciled to the cent" in narrow and "✓ balanced" in narrow  # the demo ends with payouts
    back_header = next(line for line in table if line.lstrip().startswith("order") and "ERPNext" in line)
    assert back_header.split() == ["order", "what", "Stripe", "Clarity", "ERPNext", "ok"]
    for kind in ("return (Clarity)", "refund (Dashboard)", "dispute won", "dispute lost"):
        assert kind in text, kind
    back = {row["what"]: row for row in _cells(table, "Money going back, in each system").values()}
    assert sorted(back) == ["dispute lost", "dispute won", "refund in the Dashboard", "return refunded in Clarity"]
    assert all(row["ok"] == "yes" for row in back.values()), back
    ret, refund = back["return refunded in Clarity"], back["refund in the Dashboard"]
    assert ret["Stripe"] == "refund $12.50 succeeded", ret  # one refund per return, to the cent
    assert ret["Clarity"] == "Partially Refunded return $12.50 Completed", ret
    assert ret["ERPNext"] == "credit note -$12.50 Pay entry $12.50", ret
    assert refund["Stripe"] == "refund KWD 4.250 succeeded", refund  # one return per Dashboard refund
    assert refund["Clarity"] == "Partially Refunded return KWD 4.250 Completed", refund
    assert refund["ERPNext"] == "credit note -KWD 4.250 Pay entry KWD 4.250", refund
    won, lost = back["dispute won"], back["dispute lost"]
    assert won["Stripe"] == "dispute €39.98 won" and won["Clarity"] == "Full Payment Received (was Disputed)", won
    assert won["ERPNext"] == "withdrawal (with fee) €54.98 reinstatement €39.98", won  # dispute fee €15.00 kept
    assert lost["Stripe"] == "dispute $30.00 lost" and lost["Clarity"] == "Chargeback (was Disputed)", lost
    assert lost["ERPNext"] == "withdrawal (with fee) $45.00 chargeback $30.00", lost

    # 200 columns, --wide: every column, one line per paid order, e-mail subjects whole
    wtable = _table(wide)
    assert not any("…" in line for line in wtable), "\n".join(wtable)
    wheader = next(line for line in wtable if line.lstrip().startswith("order"))
    for column in ("balance", "ERP sales order", "ERP payment", "e-mails"):
        assert column in wheader, wheader
    assert max(len(line.rstrip()) for line in wide.splitlines()) <= 200
    paid = [line for line in wtable if "paid (KWD)" in line]
    assert len(paid) == 1 and "KWD 12.750" in paid[0] and "KWD 0.000" in paid[0] and "SAL-ORD" in paid[0], paid
    wtext = " ".join(" ".join(line.split()) for line in wtable)
    wback = {row["what"]: row for row in _cells(wtable, "Money going back, in each system").values()}
    wret, wlost = wback["return refunded in Clarity"], wback["dispute lost"]  # --wide: each record's id too
    assert re.fullmatch(r"refund \$12\.50 succeeded \(re_\w+\)", wret["Stripe"]), wret
    assert re.search(r"return \$12\.50 Completed \(RMA-WEB-\d+\)", wret["Clarity"]), wret
    assert re.fullmatch(r"withdrawal \(with fee\) \$45\.00 \(ACC-JV-[\d-]+\) chargeback \$30\.00 \(ACC-JV-[\d-]+\)",
                        wlost["ERPNext"]), wlost
    assert "declined" in wtext and re.search(r"Your payment for order WEB-\d+ was\s.*declined", wtext), wtext
