"""Docs that run: every shell command in README.md, docs/quickstart.md and docs/howto/*.md, run as written.

How a page is read:

- the commands are the ```` ```sh ````, ```` ```bash ```` and ```` ```console ```` blocks (``$ `` starts a
  command in a console block; the lines after it are its expected output, and each must appear in what
  it prints); a ```` ```text ```` block is output for the reader and is not run;
- a block is not run only when the line before it says why: ``<!-- docs-test: skip: REASON -->``;
- every command needs an entry in :data:`EXPECT` (exit code and a line of its output), so a new command
  on a page fails here until someone says what it must do; ``export`` lines need none: each exported
  ``CB_`` name must be a setting (or a secret's ``_FILE``), and the settings of a block of exports must
  load;
- placeholders are resolved (:data:`PLACEHOLDERS` and each entry's ``rewrite``): secrets, hosts and
  ports of the examples become the sandbox stack's, ``/etc`` and ``/tmp`` a folder of the test's, and
  long runs are shortened (``make demo`` places 4 orders);
- a page runs in one shell session, in a folder of its own holding ``.venv``, ``Makefile`` and
  ``pyproject.toml`` (links to the checkout), so ``./data/`` stays there; exports carry from block to
  block; a command that runs until Ctrl-C runs in the background until it is ready, and gets SIGINT
  when its block ends (``page_long``: when the page ends, for a page whose later blocks are "another
  terminal").

One sandbox stack (peers and a bridge, in this process) serves the module. Each page is a test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from commerce_bridge.config import SECRET_FIELDS, Settings
from commerce_bridge.entrypoints.demo_order_to_cash import (
    CLARITY_PASSWORD,
    CLARITY_USER,
    ERP_KEY,
    ERP_SECRET,
    STRIPE_KEY,
    Stack,
    sandbox_stack,
)
from commerce_bridge.sandbox.runner import free_port
from commerce_bridge.sandbox.traffic import Scenario
from tests.support.databases import pg_admin_url, postgres_database
from tests.support.processes import BridgeProcess, bridge_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/quickstart.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs/howto").glob("*.md"))]
SKIP = re.compile(r"^<!-- docs-test: skip: (?P<reason>\S.*\S) -->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
RUN_LANGS = {"sh", "bash", "console", "shell"}
HEREDOC = re.compile(r"<<-?\s*'?\"?(?P<tag>\w+)'?\"?")
EXPORT = re.compile(r"^export\s+(?P<assignments>.*)$")


@dataclass(frozen=True)
class Expect:
    """What a command must do (after its placeholders are resolved)."""

    out: str | None  # a line (a substring of the output) it must print; None only with a reason in `why`
    code: int = 0
    rewrite: tuple[tuple[str, str], ...] = ()  # this command's own placeholders: (text, replacement with {ctx})
    background: str | None = None  # runs until Ctrl-C: "http PATH" (answers 200) or "out TEXT" when ready
    shared: bool = False  # the same command (resolved) on several pages runs once and they share its result
    stopped: str | None = None  # what it prints after SIGINT
    page_long: bool = False  # a background command that runs on while the page's later blocks run (another terminal)
    why: str = ""


DEMO = "every order reached its expected end state"
EXPECT: dict[tuple[str, str], Expect] = {
    ("README.md", "make demo"): Expect(DEMO, rewrite=(("make demo", 'DEMO_ARGS="--orders 4" make demo'),),
                                       shared=True),
    ("README.md", ".venv/bin/commerce-bridge serve --port 8000"): Expect(None, background="http /readyz",
                                                                      why="ready: /readyz answers 200"),
    ("README.md", "commerce-bridge db upgrade"): Expect("database at revision"),
    ("README.md", "commerce-bridge ingress --port 8000"): Expect(None, background="http /healthz",
                                                                 why="ready: /healthz answers 200"),
    ("README.md", "commerce-bridge worker --worker-id worker-1"): Expect(None, background="out worker worker-1 running",
                                                                       why="ready when it says so"),
    ("README.md", "commerce-bridge worker --worker-id worker-2"): Expect(None, background="out worker worker-2 running",
                                                                       why="ready when it says so"),
    ("docs/howto/scale-out.md", "commerce-bridge db upgrade"): Expect("database at revision"),
    ("docs/howto/scale-out.md", "commerce-bridge ingress --port 8000"): Expect(None, background="http /healthz",
                                                                            why="ready: /healthz answers 200"),
    ("docs/howto/scale-out.md", "commerce-bridge worker --worker-id worker-1 --port 8001"): Expect(
        None, background="http /readyz", why="ready: /readyz answers 200 (its heartbeat is fresh)"),
    ("docs/howto/scale-out.md", "commerce-bridge workers list"): Expect("alive"),
    ("docs/quickstart.md", "make demo"): Expect(DEMO, rewrite=(("make demo", 'DEMO_ARGS="--orders 4" make demo'),),
                                                shared=True),
    ("docs/quickstart.md", 'DEMO_ARGS="--orders 24 --wide --keep" make demo'): Expect(
        "database and log kept in", rewrite=(("--orders 24", "--orders 4"),)),
    ("docs/quickstart.md", ".venv/bin/commerce-bridge doctor"): Expect("`serve` will migrate it to"),
    ("docs/quickstart.md", ".venv/bin/commerce-bridge serve"): Expect(None, background="http /readyz",
                                                                     why="ready: /readyz answers 200"),
    ("docs/quickstart.md", "commerce-bridge sandbox up"): Expect(
        None, background="out commerce-bridge serve --port 8000", stopped="Sandbox stopped.",
        why="ready once it printed the bridge's settings, the last of which is the serve command",
        rewrite=(("sandbox up", "sandbox up --port 0"),)),  # free ports, not the well-known ones
    ("docs/howto/alerts.md", "commerce-bridge config show"): Expect('"smtp.example.com"'),
    ("docs/howto/connect-real-systems.md", "commerce-bridge doctor"): Expect("logged in as ClarityConnect"),
    ("docs/howto/dead-letter-queue.md", "commerce-bridge dlq list"): Expect("not_found"),
    ("docs/howto/dead-letter-queue.md", "commerce-bridge dlq show 12"): Expect(
        '"suggested_fix"', rewrite=((" 12", " {dlq0}"),)),
    ("docs/howto/dead-letter-queue.md", "commerce-bridge dlq replay 12"): Expect(
        "replaying run", rewrite=((" 12", " {dlq0}"),)),
    ("docs/howto/dead-letter-queue.md", "commerce-bridge dlq replay 12 --from-start"): Expect(
        "from its first step", rewrite=((" 12", " {dlq1}"),)),
    ("docs/howto/dead-letter-queue.md", 'commerce-bridge dlq discard 12 --reason "customer paid by bank transfer"'):
        Expect("discarded entry {dlq2}", rewrite=((" 12", " {dlq2}"),)),
    ("docs/howto/reverse-proxy.md", "curl -s -o /dev/null -w '%{http_code}\\n' -H \"X-Big: $(head -c 65536 "
                                    "/dev/zero | tr '\\0' a)\" \\"): Expect("431"),  # the bridge itself answers
    ("docs/howto/write-a-workflow.md", "mkdir -p /etc/commerce-bridge/workflows"): Expect(None, why="exit 0"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows show clarity.order_to_cash --no-config > "
                                       "/etc/commerce-bridge/workflows/order_to_cash.yaml"): Expect(
        None, why="writes the file that validate checks next"),
    ("docs/howto/write-a-workflow.md", "sed -i 's/^version: 3$/version: 4/' "
                                       "/etc/commerce-bridge/workflows/order_to_cash.yaml"): Expect(
        None, why="validate then reports version 4"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows validate "
                                       "/etc/commerce-bridge/workflows/order_to_cash.yaml"): Expect("version 4"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows list"): Expect("user"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows graph clarity.order_to_cash"): Expect("flowchart"),
    ("docs/howto/refunds-from-stripe.md", "commerce-bridge workflows graph stripe.refund_recorded"):
        Expect("flowchart"),
    ("docs/howto/disputes.md", "commerce-bridge workflows graph stripe.dispute_recorded"): Expect("flowchart"),
    ("docs/howto/disputes.md", "commerce-bridge workflows graph stripe.dispute_evidence"): Expect("flowchart"),
    ("docs/howto/payouts.md", "commerce-bridge workflows graph stripe.payout_reconciled"): Expect("flowchart"),
    ("docs/howto/payouts.md", "commerce-bridge reconcile payout --help"): Expect("--dry-run"),
    ("docs/howto/find-missed-events.md", "commerce-bridge gaps --help"): Expect("--dry-run"),
    ("docs/howto/backfill.md", "commerce-bridge backfill customers --help"): Expect("--restart"),
    ("docs/howto/refunds-from-stripe.md", "commerce-bridge workflows graph clarity.return_refunded"):
        Expect("flowchart"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows graph clarity.order_to_cash --format html "
                                       "--output /tmp/order_to_cash.html"): Expect(
        "wrote {home}/tmp/order_to_cash.html"),
    ("docs/howto/write-a-workflow.md", "cat > /tmp/order.json <<'EOF'"): Expect(None, why="dry-run reads it next"),
    ("docs/howto/write-a-workflow.md", "commerce-bridge workflows dry-run clarity.order_to_cash --event "
                                       "/tmp/order.json --fail payment=upstream_rejected"): Expect(
        "clarity.order_to_cash version 4, run clarity:evt_test_1"),
    # the page's first block is terminal 1 (dev runs on while terminal 2's blocks run), on free ports
    ("docs/howto/place-an-order-by-hand.md", "commerce-bridge dev"): Expect(
        None, background="out Ready. Ctrl-C stops the bridge and the peers.", page_long=True,
        stopped="Stopped the bridge and the sandbox peers.", why="ready once it printed the wiring and `Ready.`",
        rewrite=(("commerce-bridge dev", "commerce-bridge dev --port {port} --stripe-port 0 --clarity-port 0 "
                                         "--erp-port 0 --mail-port 0 --smtp-port 0"),)),
    ("docs/howto/place-an-order-by-hand.md", "source data/dev/env.sh"): Expect(
        None, why="the settings dev printed, for the commands below"),
    ("docs/howto/place-an-order-by-hand.md", "commerce-bridge sandbox order --currency EUR --amount 42.00"): Expect(
        "ERP SAL-ORD-"),
    ("docs/howto/place-an-order-by-hand.md", "commerce-bridge sandbox order --payment-method "
                                             "pm_card_chargeDeclined"): Expect("payment was declined; the bridge "
                                                                               "put it on hold"),
    ("docs/howto/place-an-order-by-hand.md", "commerce-bridge events list"): Expect("payment_intent.succeeded"),
    ("docs/howto/place-an-order-by-hand.md", "commerce-bridge events show 1"): Expect(
        ":clarity.order_to_cash  succeeded"),
    ("docs/howto/place-an-order-by-hand.md", 'curl -s -H "Authorization: Bearer $CB_ADMIN_TOKENS" '
                                             '"http://127.0.0.1:8000/api/v1/events?source=stripe"'): Expect(
        '"workflow":"stripe.payment_succeeded","status":"succeeded"', rewrite=(("127.0.0.1:8000", "127.0.0.1:{port}"),)),
}

# the examples' stand-ins, for every page: (text on the page, replacement; {name} from the context)
PLACEHOLDERS: tuple[tuple[str, str], ...] = (
    ("whsec_...", "{webhook_secret}"),
    ("sk_live_...", STRIPE_KEY),
    ("https://shop.example.com", "{clarity}"),
    ("CB_CLARITY_USER=integration-user", f"CB_CLARITY_USER={CLARITY_USER}"),
    ("/run/secrets/", "{home}/secrets/"),
    ("https://erp.example.com", "{erp}"),
    ("CB_ERP_API_KEY=...", f"CB_ERP_API_KEY={ERP_KEY}"),
    ("https://bridge.example.com", "{bridge}"),
    ("postgresql+psycopg://bridge@db/bridge", "{postgres}"),
    ("postgresql+psycopg://bridge:...@db-host/bridge", "{postgres}"),
    ("--port 8000", "--port {port}"),
    ("--port 8001", "--port {port2}"),
    ("/etc/commerce-bridge", "{home}/etc/commerce-bridge"),
    ("/tmp/", "{home}/tmp/"),
)


def resolve(text: str, pairs: tuple[tuple[str, str], ...], ctx: dict[str, str]) -> str:
    """``text`` with each placeholder replaced once (a replacement is never replaced again); the first pair wins."""
    table: dict[str, str] = {}
    for old, new in pairs:
        table.setdefault(old, new.format(**ctx))
    pattern = re.compile("|".join(re.escape(old) for old in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], text)


@dataclass
class Command:
    page: str
    line: int
    text: str  # as on the page (continuations and here-documents included)
    expected_output: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.text.splitlines()[0].split("  #")[0].strip()

    @property
    def is_export(self) -> bool:
        return all(EXPORT.match(line) for line in self.text.splitlines())


@dataclass
class Block:
    page: str
    line: int
    commands: list[Command]


def read_blocks(page: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The page's runnable blocks, and (line, reason) of the blocks it marks as not run."""
    lines = (ROOT / page).read_text().splitlines()
    blocks: list[Block] = []
    skipped: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or not fence.group("lang"):
            i += 1
            continue
        indent, lang, start = len(fence.group("indent")), fence.group("lang"), i
        body: list[str] = []
        i += 1
        while not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        if lang not in RUN_LANGS:
            continue
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        mark = SKIP.match(previous)
        if mark:
            skipped.append((start + 1, mark.group("reason")))
            continue
        blocks.append(Block(page, start + 1, _commands(page, start + 2, body, console=lang == "console")))
    return blocks, skipped


def _commands(page: str, first_line: int, body: list[str], *, console: bool) -> list[Command]:
    out: list[Command] = []
    j = 0
    while j < len(body):
        raw = body[j]
        if console and not raw.startswith("$ "):
            if out and raw.strip():
                out[-1].expected_output.append(raw.strip())
            j += 1
            continue
        text = raw[2:] if console else raw
        if not text.strip() or text.lstrip().startswith("#"):
            j += 1
            continue
        cmd = [text]
        while cmd[-1].rstrip().endswith("\\") and j + 1 < len(body):
            j += 1
            cmd.append(body[j])
        heredoc = HEREDOC.search(text)
        if heredoc:
            while j + 1 < len(body):
                j += 1
                cmd.append(body[j])
                if body[j].strip() == heredoc.group("tag"):
                    break
        out.append(Command(page, first_line + j, "\n".join(cmd)))
        j += 1
    return out


# ---- the sandbox stack and the context placeholders resolve to ------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with sandbox_stack(workdir=tmp_path_factory.mktemp("docs-stack")) as st:
        yield st


def _dead_letters(st: Stack, n: int) -> list[int]:
    """Open DLQ entries: orders with a SKU the ERP does not know (ids, oldest first)."""
    c = st.container
    for i in range(n):
        st.traffic.place(900 + i, Scenario("unknown SKU", "USD", (("SKU-DOCS", 1, "10.00"),)))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and c.dead_letters.count_open() < n:
        time.sleep(0.5)
    ids = sorted(int(e["id"]) for e in c.dead_letters.list(status="open"))
    assert len(ids) >= n, c.dead_letters.list(status="all")
    return ids


SHARED_LOCK = threading.Lock()
SHARED: dict[str, tuple[threading.Lock, list[subprocess.CompletedProcess[str]]]] = {}


class Session:
    """One page's shell session: its folder, its environment (exports carry over) and its background jobs."""

    def __init__(self, home: Path, env: dict[str, str], ctx: dict[str, str]) -> None:
        self.home, self.env, self.ctx = home, env, ctx
        self.env_file = home / ".session-env"
        self.env_file.write_text("")
        self.jobs: list[tuple[Command, subprocess.Popen[bytes], Path, Expect]] = []
        for name in (".venv", "Makefile", "pyproject.toml"):
            (home / name).symlink_to(ROOT / name)
        (home / "tmp").mkdir()
        secrets = home / "secrets"
        secrets.mkdir()
        (secrets / "clarity_password").write_text(CLARITY_PASSWORD + "\n")
        (secrets / "erp_api_secret").write_text(ERP_SECRET + "\n")

    def resolve(self, cmd: Command, expect: Expect) -> str:
        return resolve(cmd.text, (*expect.rewrite, *PLACEHOLDERS), self.ctx)

    def script(self, text: str, *, save_env: bool) -> str:
        tail = f'\n__rc=$?\nexport -p > "{self.env_file}"\nexit $__rc\n' if save_env else "\n"
        return f'source "{self.env_file}"\ncd "{self.home}"\n{text}{tail}'

    def run(self, cmd: Command, expect: Expect, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        if expect.shared:
            key = resolve(cmd.key, (*expect.rewrite, *PLACEHOLDERS), self.ctx)  # without the page's comment
            with SHARED_LOCK:
                lock = SHARED.setdefault(key, (threading.Lock(), []))
            with lock[0]:
                if not lock[1]:
                    lock[1].append(self._run(cmd, expect, timeout))
                return lock[1][0]
        return self._run(cmd, expect, timeout)

    def _run(self, cmd: Command, expect: Expect, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "--noprofile", "--norc", "-c", self.script(self.resolve(cmd, expect),
                                                                                   save_env=True)],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, cmd: Command, expect: Expect) -> None:
        assert expect.background is not None
        log = self.home / f"job-{cmd.line}.log"
        proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c",
                                 self.script(self.resolve(cmd, expect), save_env=False)],
                                env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.jobs.append((cmd, proc, log, expect))
        kind, _, what = expect.background.partition(" ")
        port = self._port_of(self.resolve(cmd, expect))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd.page}:{cmd.line}: `{cmd.key}` exited {proc.returncode}:\n"
                                     f"{log.read_text()[-3000:]}")
            if kind == "out" and what in log.read_text(errors="replace"):
                return
            if kind == "http":
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{what}", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise AssertionError(f"{cmd.page}:{cmd.line}: `{cmd.key}` not ready:\n{log.read_text()[-3000:]}")

    def _port_of(self, text: str) -> str:
        found = re.search(r"--port (\d+)", text)
        return found.group(1) if found else self.env["CB_PORT"]

    def stop_jobs(self, *, block_end: bool = False) -> None:
        """Ctrl-C to every background command of the block (all at once), then check how each ended.

        At a block's end (``block_end``) the commands marked ``page_long`` run on, until the page ends."""
        kept = [job for job in self.jobs if block_end and job[3].page_long]
        self.jobs = [job for job in self.jobs if job not in kept]
        for _, proc, _, _ in self.jobs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        problems = []
        for cmd, proc, log, expect in self.jobs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                problems.append(f"{cmd.page}:{cmd.line}: `{cmd.key}` ignored Ctrl-C for 30 s")
            text = log.read_text(errors="replace")
            if expect.stopped and expect.stopped not in text:
                problems.append(f"{cmd.page}:{cmd.line}: `{cmd.key}` did not say {expect.stopped!r}:\n{text[-2000:]}")
            if "Traceback" in text:
                problems.append(f"{cmd.page}:{cmd.line}: `{cmd.key}` printed a traceback:\n{text[-3000:]}")
        self.jobs = kept
        assert not problems, "\n".join(problems)

    def check_exports(self, block: Block) -> None:
        """Each exported CB_ name is a setting, and the settings load (what every command reads first)."""
        names = {a.split("=", 1)[0] for c in block.commands if c.is_export
                 for a in re.findall(r"(CB_\w+)=", c.text)}
        known = {f"CB_{n.upper()}" for n in Settings.model_fields}
        known |= {f"CB_{n.upper()}_FILE" for n in SECRET_FIELDS}
        assert names <= known, f"{block.page}:{block.line}: not settings: {sorted(names - known)}"
        if not all(c.is_export for c in block.commands):
            return  # the block's own commands load the settings
        check = self.script(f'"{sys.executable}" -c "from commerce_bridge.config import load_settings; '
                            f'load_settings()"', save_env=False)
        out = subprocess.run(["bash", "--noprofile", "--norc", "-c", check], env=self.env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"{block.page}:{block.line}: the settings of this block do not load:\n{out.stderr}"


def _context(stack: Stack, home: Path, page: str, cleanup: ExitStack) -> dict[str, str]:
    ctx = {"webhook_secret": "whsec_docs_test", "clarity": stack.urls["Clarity simulator"],
           "erp": stack.urls["ERPNext simulator"], "bridge": stack.urls["bridge"], "home": str(home),
           "port": str(free_port()), "port2": str(free_port()), "postgres": f"sqlite:///{home / 'scale-out.sqlite'}"}
    if pg_admin_url() and "postgresql+psycopg://" in (ROOT / page).read_text():
        # a fresh PostgreSQL database per page (without CB_TEST_DATABASE_URL, the SQLite file above)
        ctx["postgres"] = cleanup.enter_context(postgres_database())
    if page.endswith("dead-letter-queue.md"):
        ids = _dead_letters(stack, 3)
        ctx.update({f"dlq{i}": str(n) for i, n in enumerate(ids)})
    if page.endswith("reverse-proxy.md"):  # the proxy's checks go to `serve` itself: its HTTP limits are serve's
        port = free_port()
        env = bridge_env(database_url=f"sqlite:///{home / 'proxy.sqlite'}", stripe_webhook_secrets="whsec_docs_test",
                         port=port, worker_id="docs-proxy")
        serve = BridgeProcess(["serve"], env, home, "serve", port=port).start()
        cleanup.callback(serve.stop)
        ctx["bridge"] = serve.url
    return ctx


def _env(stack: Stack, page: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_") and k not in ("DEMO_ARGS", "MAKEFLAGS")}
    env.update({"PATH": f"{ROOT / '.venv/bin'}:{env.get('PATH', '')}", "COLUMNS": "200",
                "CB_PORT": str(free_port()), "CB_LOG_LEVEL": "WARNING"})
    if page.endswith("connect-real-systems.md"):  # "Stripe itself", where the page leaves CB_STRIPE_API_BASE unset
        env["CB_STRIPE_API_BASE"] = stack.urls["Stripe emulator"]
    if page.endswith("dead-letter-queue.md"):  # the operator's shell: the settings of the bridge that parked them
        for k, v in stack.container.settings.model_dump(mode="json").items():
            if v is not None:
                value = v if isinstance(v, str) else ",".join(v) if isinstance(v, list) else json.dumps(v)
                env[f"CB_{k.upper()}"] = value
        for name in SECRET_FIELDS:
            secret = getattr(stack.container.settings, name)
            if secret:
                env[f"CB_{name.upper()}"] = (",".join(s.get_secret_value() for s in secret)
                                             if isinstance(secret, list) else secret.get_secret_value())
    return env


def _run_page(page: str, stack: Stack, home: Path) -> None:
    blocks, skipped = read_blocks(page)
    assert blocks or skipped, f"{page} has no shell block: drop it from PAGES or add one"
    missing = [f"{c.page}:{c.line}: {c.key!r}" for b in blocks for c in b.commands
               if not c.is_export and (page, c.key) not in EXPECT]
    assert not missing, "commands without an expectation in EXPECT:\n" + "\n".join(missing)
    with ExitStack() as cleanup:
        session = Session(home, _env(stack, page), _context(stack, home, page, cleanup))
        cleanup.callback(session.stop_jobs)
        for block in blocks:
            session.check_exports(block)
            for cmd in block.commands:
                expect = EXPECT.get((page, cmd.key), Expect(None, why="export"))
                assert expect.out is not None or expect.why, (page, cmd.key)
                where = f"{page}:{cmd.line}: `{session.resolve(cmd, expect)}`"
                if expect.background:
                    session.start(cmd, expect)
                    continue
                t0 = time.monotonic()
                out = session.run(cmd, expect)
                print(f"{time.monotonic() - t0:6.1f} s  {where}")
                text = out.stdout + out.stderr
                assert out.returncode == expect.code, f"{where} exited {out.returncode}:\n{text[-3000:]}"
                if expect.out is not None:
                    assert expect.out.format(**session.ctx) in text, f"{where} did not print {expect.out!r}:\n{text[-3000:]}"
                for line in cmd.expected_output:  # what a console block shows after the command
                    shown = resolve(line, PLACEHOLDERS, session.ctx)
                    assert shown in text, f"{where}: the page shows {shown!r}, the command printed:\n{text[-3000:]}"
                assert "Traceback" not in text, f"{where}:\n{text[-3000:]}"
            session.stop_jobs(block_end=True)


def test_every_shell_command_in_the_docs_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    """Three pages at a time (most of a command's time is Python starting up, or waiting for a peer);
    the longest pages first. Every page runs to its end; the failures of all of them are reported."""
    first = ("quickstart", "README", "dead-letter", "scale-out")
    order = sorted(PAGES, key=lambda p: ([f not in p for f in first], p))

    def run(page: str) -> str:
        home = tmp_path / re.sub(r"\W+", "-", page)
        home.mkdir()
        try:
            _run_page(page, stack, home)
        except Exception as exc:  # reported below, with every other page's
            return f"--- {page}: {type(exc).__name__}: {exc}"
        return ""

    with ThreadPoolExecutor(max_workers=3) as pool:
        failures = [f for f in pool.map(run, order) if f]
    assert not failures, "\n".join(failures)


def test_a_page_can_skip_a_block_only_saying_why() -> None:
    blocks, skipped = read_blocks("README.md")
    assert skipped and all(len(reason) > 10 for _, reason in skipped), skipped
    assert "make test" not in [c.key.split("  #")[0].strip() for b in blocks for c in b.commands]
    # every expectation belongs to a command that is still on its page: a renamed command fails here
    on_pages = {(p, c.key) for p in PAGES for b in read_blocks(p)[0] for c in b.commands}
    assert set(EXPECT) - on_pages == set(), sorted(set(EXPECT) - on_pages)


def test_placeholders_cover_what_a_page_cannot_run_as_is() -> None:
    """`...` in a command is a placeholder: each must be resolved (or the command would run with `...`)."""
    unresolved = []
    for page in PAGES:
        for block in read_blocks(page)[0]:
            for cmd in block.commands:
                text = cmd.text.split("#")[0] if cmd.is_export else cmd.text
                for old, _ in PLACEHOLDERS:
                    text = text.replace(old, "")
                if "..." in text:
                    unresolved.append(f"{page}:{cmd.line}: {cmd.text}")
    assert unresolved == [], "\n".join(unresolved)
