"""Benchmark live pushes: commit of a burst of ticket changes -> every wall screen has it.

Run from the repository root (PostgreSQL and Redis on this machine; loopback only):

    .venv/bin/python bench/bench_push.py [--screens 100,500,1000] [--workers 1] \\
        [--paths direct,celery] [--bursts 3] [--clients 1] [--keep]

What it does:

1. Creates (if missing) and migrates its own database (``--database``, default
   ``slaboard_bench_push``; give concurrent runs different names), seeds the demo
   (``seed_demo(tickets=300)``), takes the demo board ``all`` and gives it a kiosk token.
   Redis: a dedicated logical database (``--redis-db``, default 12; it must be empty at the
   start and is flushed at the end) and a channel prefix unique to the run.
2. Starts the real server, as in the README's production section:
   ``uvicorn slaboard.asgi:application --lifespan off --ws-per-message-deflate false
   --workers N`` with ``DEBUG=0``, on a free loopback port, and waits for it to listen.
3. Load generator: ``--clients`` spawned processes (asyncio + uvloop + the ``websockets``
   client) open the screens as kiosks, ``ws://127.0.0.1:P/ws/boards/all/?kiosk=<token>`` with
   ``Origin: http://127.0.0.1:P`` (no Origin is refused by AllowedHostsOriginValidator; the
   script checks both), in batches of ``--batch`` concurrent handshakes, each waiting for its
   snapshot. Screens stay open while the count grows 100 -> 500 -> 1000.
4. A burst, in one transaction through ``tickets.actions``: the subject of the board's most
   urgent ticket becomes a unique marker (it is shown in the ``board-queue`` fragment),
   ``--new`` tickets are opened (changes the counts, so the other fragments change too) and
   the rest of the ``--changes`` are human replies. ``t0`` = ``time.time()`` in the first
   ``on_commit`` callback, i.e. right after COMMIT. Then:
   - path ``direct``: the bench process calls ``dashboard.publish.publish(now=...)`` itself,
     which is what the Celery ``dashboard.publish`` task does (without its 250 ms coalescing
     countdown and the broker hop); ``mark_dirty`` is a no-op in this path.
   - path ``celery``: the product path: ``on_commit`` -> ``mark_dirty`` -> the
     ``dashboard.publish`` task (250 ms countdown) on a real Celery worker subprocess
     (``--pool solo``) -> ``publish`` -> channel layer -> uvicorn -> screens.
   Every screen records when its first message containing the marker arrives (``latency`` =
   that time - t0, same machine clock) and when the last board fragment of the push arrives
   (``complete``). ``--bursts`` bursts per screen count and path; percentiles pool them.
5. RSS (VmRSS) and CPU time of the uvicorn processes (and of the load generator) are read
   from /proc after the screens are connected and after the bursts; the machine's load
   average at each burst. At the end (``--no-reconnect`` to skip) every screen is closed and
   reconnected at once, as after a deploy, and the reconnect rate is printed.

``--split`` sends one message per changed fragment in the direct path, to measure what a
product change would give. Results and findings: docs/bench-push.md.

``--profile`` samples the server workers with py-spy (``--py-spy PATH``; not a project
dependency) during extra bursts at the largest screen count and prints the hottest frames.
Everything is bounded in time (``--max-minutes``); subprocesses and sockets are closed and the
database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "slaboard_bench_push"
BOARD_SLUG = "all"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROFILE_RATE = 250  # py-spy samples per second
FRAGMENT_ID = re.compile(r'<section id="([\w-]+)"')


# --- /proc helpers ---------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_connections_received(client: Any) -> int:
    return int(client.info("stats")["total_connections_received"])


def machine_busy_seconds() -> float:
    """CPU time spent busy by the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def load_average() -> float:
    """The machine's 1-minute load average (/proc/loadavg): how busy the 2 cores were."""
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def socket_count(pid: int) -> int:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    count = 0
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
    return count


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- load generator (runs in spawned processes; no Django here) -----------------------------


class LoadGenerator:
    """Holds a share of the screens in one process, driven by commands over a Pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.alive: list[bool] = []
        self.armed = False
        self.marker = ""
        self.records: list[list[tuple[float, str]]] = []
        self.marker_at: list[float | None] = []
        self.pending = 0
        self.all_marked: asyncio.Event | None = None
        self.last_received = 0.0

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.all_marked = asyncio.Event()
        while True:
            command, arguments = await loop.run_in_executor(None, self.conn.recv)
            try:
                result = await getattr(self, f"do_{command}")(**arguments)
            except Exception as error:  # reported to the bench, which stops
                result = {"error": repr(error)}
            self.conn.send(result)
            if command == "quit":
                return

    async def do_connect(
        self, url: str, origin: str | None, count: int, batch: int, timeout: float
    ) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        started, cpu0 = time.monotonic(), sum(os.times()[:2])
        errors: Counter[str] = Counter()
        opened = 0

        async def one() -> None:
            nonlocal opened
            try:
                ws = await connect(
                    url,
                    origin=origin,  # type: ignore[arg-type]
                    compression=None,
                    open_timeout=timeout,
                    ping_interval=None,  # uvicorn pings; the client answers automatically
                    close_timeout=2,
                    max_size=2**22,
                )
            except Exception as error:
                errors[type(error).__name__ + ": " + str(error)[:80]] += 1
                return
            try:
                snapshot = await asyncio.wait_for(ws.recv(), timeout)
            except Exception as error:
                errors["no snapshot: " + type(error).__name__ + " " + str(error)[:60]] += 1
                await ws.close()
                return
            if 'id="board-metrics"' not in str(snapshot):
                errors["snapshot without board-metrics"] += 1
            index = len(self.sockets)
            self.sockets.append(ws)
            self.alive.append(True)
            self.records.append([])
            self.marker_at.append(None)
            self.readers.append(asyncio.create_task(self._read(index, ws)))
            opened += 1

        for start in range(0, count, batch):
            await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
        return {
            "opened": opened,
            "errors": dict(errors),
            "seconds": time.monotonic() - started,
            "cpu": sum(os.times()[:2]) - cpu0,
            "total": sum(self.alive),
        }

    async def _read(self, index: int, ws: Any) -> None:
        try:
            async for message in ws:
                if not self.armed:
                    continue
                now = time.time()
                text = message if isinstance(message, str) else message.decode()
                if 'id="board-heartbeat"' not in text[:80]:
                    self.last_received = now  # heartbeats do not count for "quiet"
                self.records[index].append((now, text))
                if self.marker_at[index] is None and self.marker in text:
                    self.marker_at[index] = now
                    self.pending -= 1
                    if self.pending == 0 and self.all_marked is not None:
                        self.all_marked.set()
        except Exception:  # ConnectionClosed and friends: counted below
            pass
        finally:
            self.alive[index] = False

    async def do_arm(self, marker: str) -> dict[str, Any]:
        assert self.all_marked is not None
        self.marker = marker
        self.records = [[] for _ in self.sockets]
        self.marker_at = [None] * len(self.sockets)
        self.pending = sum(self.alive)
        self.all_marked.clear()
        self.armed = True
        return {"armed": self.pending, "cpu": sum(os.times()[:2])}

    async def do_collect(self, timeout: float, quiet: float) -> dict[str, Any]:
        assert self.all_marked is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_marked.wait(), timeout)
        # The marker is in board-queue; board-compliance may follow it: wait for quiet.
        deadline = time.time() + 3
        while time.time() - self.last_received < quiet and time.time() < deadline:
            await asyncio.sleep(0.05)
        self.armed = False
        complete: list[float | None] = []
        counts: list[int] = []
        fragments: Counter[str] = Counter()
        for index, records in enumerate(self.records):
            if not self.alive[index] and not records:
                complete.append(None)
                counts.append(0)
                continue
            board = [(at, text) for at, text in records if 'id="board-heartbeat"' not in text[:80]]
            complete.append(max((at for at, _ in board), default=None))
            counts.append(len(board))
            for _, text in board:
                fragments.update(FRAGMENT_ID.findall(text))
        self.records = []
        return {
            "marker_at": self.marker_at,
            "complete": complete,
            "counts": counts,
            "fragments": dict(fragments),
            "alive": sum(self.alive),
            "cpu": sum(os.times()[:2]),
        }

    async def do_close(self) -> dict[str, Any]:
        await asyncio.gather(
            *(asyncio.wait_for(ws.close(), 5) for ws in self.sockets), return_exceptions=True
        )
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        closed = len(self.sockets)
        self.sockets, self.readers, self.alive, self.records, self.marker_at = [], [], [], [], []
        return {"closed": closed}

    async def do_quit(self) -> dict[str, Any]:
        return await self.do_close()


def load_generator_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us with "quit"
    generator = LoadGenerator(conn)
    try:
        import uvloop

        uvloop.run(generator.serve())
    except ImportError:
        asyncio.run(generator.serve())


class LoadGenerators:
    """The bench side of ``--clients`` load-generator processes."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for _ in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(target=load_generator_main, args=(theirs,), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        self.sizes = [0] * processes

    def call(self, command: str, per_process: list[dict[str, Any]], timeout: float) -> list[Any]:
        for pipe, arguments in zip(self.pipes, per_process, strict=True):
            pipe.send((command, arguments))
        results = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError(f"load generator did not answer {command!r} in {timeout} s")
            result = pipe.recv()
            if isinstance(result, dict) and "error" in result:
                raise RuntimeError(f"load generator failed on {command!r}: {result['error']}")
            results.append(result)
        return results

    def broadcast(self, command: str, timeout: float, **arguments: Any) -> list[Any]:
        return self.call(command, [arguments] * len(self.pipes), timeout)

    def grow(
        self, target: int, url: str, origin: str | None, batch: int, timeout: float
    ) -> dict[str, Any]:
        """Open screens until ``target`` are open, spread evenly over the processes."""
        share = [target // len(self.pipes)] * len(self.pipes)
        for index in range(target % len(self.pipes)):
            share[index] += 1
        extra = [max(0, want - have) for want, have in zip(share, self.sizes, strict=True)]
        started = time.monotonic()
        results = self.call(
            "connect",
            [
                {"url": url, "origin": origin, "count": n, "batch": batch, "timeout": timeout}
                for n in extra
            ],
            timeout=timeout * (max(extra) // batch + 2) + 60,
        )
        self.sizes = [r["total"] for r in results]
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r["errors"])
        return {
            "opened": sum(r["opened"] for r in results),
            "total": sum(self.sizes),
            "seconds": time.monotonic() - started,
            "errors": dict(errors),
        }

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.broadcast("quit", timeout=30)
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


# --- subprocesses: uvicorn and the Celery worker --------------------------------------------


class Subprocess:
    """A child process whose output is drained into a ring buffer by a thread."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: deque[str] = deque(maxlen=400)
        self.total = 0  # lines read so far
        self.seen = threading.Condition()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # our own process group: signals reach only our tree
        )
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.seen:
                self.lines.append(line.rstrip())
                self.total += 1
                self.seen.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.seen:
            while not predicate(list(self.lines)):
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n" + "\n".join(self.lines))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name} not ready in {timeout} s:\n" + self.tail())
                self.seen.wait(min(left, 0.5))

    def since(self, total: int) -> list[str]:
        """The lines read after the first ``total`` (as far as the ring buffer reaches)."""
        with self.seen:
            return list(self.lines)[max(0, len(self.lines) - (self.total - total)) :]

    def tail(self, n: int = 30) -> str:
        return "\n".join(list(self.lines)[-n:])

    def tree(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.drain.join(5)


def start_server(workers: int, port: int, env: dict[str, str]) -> Subprocess:
    env = dict(env)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "slaboard.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--ws-per-message-deflate",
        "false",
        "--workers",
        str(workers),
    ]
    server = Subprocess(f"uvicorn --workers {workers}", command, env)
    server.wait_for(
        lambda lines: (
            any("Uvicorn running on" in line for line in lines)
            and sum("Started server process" in line for line in lines) >= workers
        ),
        timeout=60,
    )
    return server


def server_workers(server: Subprocess) -> list[int]:
    """The processes that serve sockets: the children if uvicorn supervises, else itself."""
    tree = server.tree()
    children = [pid for pid in tree if pid != server.process.pid]
    # uvicorn --workers N>1 spawns N workers (plus multiprocessing's resource tracker).
    workers = [pid for pid in children if socket_count(pid) > 0]
    return workers or [server.process.pid]


def start_celery(env: dict[str, str]) -> Subprocess:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "slaboard",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"benchpush{os.getpid()}@%h",
    ]
    worker = Subprocess("celery worker", command, env)
    worker.wait_for(lambda lines: any(" ready." in line for line in lines), timeout=60)
    return worker


# --- the bench ----------------------------------------------------------------------------------


@dataclass
class Row:
    path: str
    workers: int
    screens: int
    split: bool = False  # --split: one message per fragment (direct path)
    latencies: list[float] = field(default_factory=list)  # ms, marker arrival
    complete: list[float] = field(default_factory=list)  # ms, last fragment of the push
    received: int = 0
    expected: int = 0
    messages: list[int] = field(default_factory=list)  # fragment messages per screen per push
    fragments: Counter[str] = field(default_factory=Counter)
    publish_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    send_ms: list[float] = field(default_factory=list)
    pushed_bytes: list[int] = field(default_factory=list)
    task_timings: list[str] = field(default_factory=list)  # celery path, from the worker log
    write_ms: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # s per burst, all workers
    client_cpu: list[float] = field(default_factory=list)  # s per burst, all generators
    publisher_cpu: list[float] = field(default_factory=list)  # bench (direct) or Celery
    other_cpu: list[float] = field(default_factory=list)  # rest of the machine
    loadavg: list[float] = field(default_factory=list)  # 1-minute load average at each burst
    window_s: list[float] = field(default_factory=list)  # commit -> collection end
    per_burst_p99: list[float] = field(default_factory=list)
    rss_connected: float = 0.0
    rss_after: float = 0.0
    rss_per_worker: list[float] = field(default_factory=list)
    sockets_per_worker: list[int] = field(default_factory=list)
    idle_server_cpu: float = 0.0  # s of CPU per s, screens connected, no pushes
    idle_pg_sessions: float = 0.0  # new PostgreSQL sessions per s in the bench database
    idle_redis_connections: float = 0.0  # new Redis connections per s (whole Redis server)
    connected: int = 0

    def variant(self) -> str:
        parts = ["split"] if self.split else []
        return "+".join(parts) or "product"

    def summary(self) -> dict[str, Any]:
        def stat(values: list[float], q: float) -> float | None:
            return round(percentile(values, q), 1) if values else None

        return {
            "path": self.path,
            "split": self.split,
            "workers": self.workers,
            "screens": self.screens,
            "p50_ms": stat(self.latencies, 50),
            "p99_ms": stat(self.latencies, 99),
            "max_ms": stat(self.latencies, 100),
            "complete_p50_ms": stat(self.complete, 50),
            "complete_p99_ms": stat(self.complete, 99),
            "per_burst_p99_ms": [round(v, 1) for v in self.per_burst_p99],
            "received": self.received,
            "expected": self.expected,
            "messages_per_push": round(sum(self.messages) / len(self.messages), 2)
            if self.messages
            else None,
            "fragments": dict(self.fragments),
            "publish_ms": [round(v, 1) for v in self.publish_ms],
            "publish_render_ms": [round(v, 1) for v in self.render_ms],
            "publish_group_send_ms": [round(v, 1) for v in self.send_ms],
            "pushed_bytes": self.pushed_bytes,
            "celery_task": self.task_timings,
            "write_ms": [round(v, 1) for v in self.write_ms],
            "server_cpu_s_per_burst": [round(v, 2) for v in self.server_cpu],
            "loadgen_cpu_s_per_burst": [round(v, 2) for v in self.client_cpu],
            "publisher_cpu_s_per_burst": [round(v, 2) for v in self.publisher_cpu],
            "other_cpu_s_per_burst": [round(v, 2) for v in self.other_cpu],
            "loadavg_1min": [round(v, 2) for v in self.loadavg],
            "cpu_window_s": [round(v, 2) for v in self.window_s],
            "rss_connected_mb": round(self.rss_connected, 1),
            "rss_after_mb": round(self.rss_after, 1),
            "rss_per_worker_mb": [round(v, 1) for v in self.rss_per_worker],
            "sockets_per_worker": self.sockets_per_worker,
            "connected": self.connected,
            "idle_server_cpu_per_s": round(self.idle_server_cpu, 3),
            "idle_pg_sessions_per_s": round(self.idle_pg_sessions, 1),
            "idle_redis_connections_per_s": round(self.idle_redis_connections, 1),
        }


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.reply_cursor = 0
        self.burst_number = 0
        self.real_mark_dirty: Callable[..., None] = _no_mark_dirty
        self.celery_pids: list[int] = []
        self.celery: Subprocess | None = None
        self.origin_checked = False

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"bench exceeded --max-minutes {self.args.max_minutes}")

    # setup ---------------------------------------------------------------------------------

    def setup_data(self) -> None:
        from django.utils import timezone

        from dashboard.access import Viewer
        from dashboard.actions import rotate_kiosk_link
        from dashboard.boards import board_state
        from dashboard.models import Board
        from policies.actions import reevaluate_due_clocks
        from slaboard.demo import seed_demo
        from tickets.models import Partner, Ticket

        started = time.monotonic()
        now = timezone.now()
        report = seed_demo(now=now, tickets=300)
        print(f"seed_demo: {report} ({time.monotonic() - started:.1f} s)", flush=True)
        board = Board.objects.get(slug=BOARD_SLUG)
        self.board = board
        self.token = board.kiosk_token or rotate_kiosk_link(board)
        reevaluate_due_clocks(now=now)  # "evaluated at" stays fixed in the bench
        rows = board_state(board, Viewer(), now)["at_risk"]
        if not rows:
            raise RuntimeError("the demo board has nothing at risk: no ticket to mark")
        self.marker_ticket_id = rows[0]["ticket"].pk
        self.partner_id = Partner.objects.order_by("pk").values_list("pk", flat=True)[0]
        self.reply_ids = list(
            Ticket.objects.open()
            .exclude(pk=self.marker_ticket_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )

    def burst(self, marker: str) -> tuple[float, float]:
        """Apply ``--changes`` product writes in one transaction; return (t0, write seconds)."""
        from django.db import transaction
        from django.utils import timezone

        from tickets.actions import change_ticket, open_ticket, record_event
        from tickets.models import ActorKind, EventKind, Ticket

        args = self.args
        now = timezone.now()
        committed: list[float] = []
        started = time.time()
        with transaction.atomic():
            # Registered first, so it runs first after COMMIT (before the mark_dirty callbacks).
            transaction.on_commit(lambda: committed.append(time.time()))
            marked = Ticket.objects.get(pk=self.marker_ticket_id)
            change_ticket(ticket=marked, changes={"subject": f"Bench {marker}"}, at=now, now=now)
            for number in range(args.new):
                open_ticket(
                    partner_id=self.partner_id,
                    subject=f"Bench load {marker} {number}",
                    opened_at=now,
                    now=now,
                    priority="low",
                )
            replies = max(0, args.changes - 1 - args.new)
            ids = [
                self.reply_ids[(self.reply_cursor + i) % len(self.reply_ids)]
                for i in range(replies)
            ]
            self.reply_cursor += replies
            for ticket in Ticket.objects.filter(pk__in=ids):
                record_event(
                    ticket=ticket,
                    kind=EventKind.REPLIED,
                    at=now,
                    now=now,
                    actor_kind=ActorKind.HUMAN,
                    payload={},
                )
        return committed[0], committed[0] - started

    # measuring -----------------------------------------------------------------------------

    def measure(
        self,
        row: Row,
        path: str,
        generators: LoadGenerators,
        workers: list[int],
        bursts: int,
        record: bool = True,
    ) -> None:
        from django.utils import timezone

        import dashboard.publish as publishing

        for _ in range(bursts):
            self.check_time()
            self.burst_number += 1
            marker = f"m{self.burst_number}x{secrets.token_hex(4)}"
            armed = generators.broadcast("arm", timeout=30, marker=marker)
            expected = sum(a["armed"] for a in armed)
            worker_mark = self.celery.total if self.celery is not None else 0
            publishing.mark_dirty = self.real_mark_dirty if path == "celery" else _no_mark_dirty
            try:
                t0, write_seconds = self.burst(marker)
            finally:
                publishing.mark_dirty = _no_mark_dirty
            # CPU from the commit on (the write phase is not part of the push).
            cpu0 = self.cpu_snapshot(workers, generators)
            probe = PublishProbe(split=self.args.split)
            if path == "direct":
                started = time.time()
                with probe:
                    publishing.publish(now=timezone.now())
                publish_ms = (time.time() - started) * 1000
            else:
                publish_ms = float("nan")
            results = self._collect(generators)
            task = ""
            if path == "celery" and self.celery is not None:
                task = celery_task_timing(self.celery.since(worker_mark), t0)
                row.task_timings.append(task)
            cpu1 = self.cpu_snapshot(workers, generators)
            cpu = {key: cpu1[key] - cpu0[key] for key in cpu0}
            server_cpu, client_cpu = cpu["server"], cpu["loadgen"]
            publisher_cpu = cpu["bench"] + cpu["celery"]
            other_cpu = cpu["machine"] - cpu["server"] - cpu["loadgen"] - publisher_cpu
            latencies = [
                (at - t0) * 1000 for r in results for at in r["marker_at"] if at is not None
            ]
            complete = [(at - t0) * 1000 for r in results for at in r["complete"] if at is not None]
            received = len(latencies)
            line = (
                f"  {path:6} w={row.workers} n={row.screens:5} burst {self.burst_number:3}: "
                f"write {write_seconds * 1000:6.0f} ms, "
                + (
                    f"publish {publish_ms:4.0f} ms (render {probe.render_ms:4.0f}, group_send "
                    f"{probe.send_ms:4.0f}; {probe.messages} msg(s), {probe.bytes} B), "
                    if path == "direct"
                    else f"task {task}, "
                )
                + f"received {received}/{expected}, "
                + (
                    f"p50 {percentile(latencies, 50):6.0f} ms, p99 {percentile(latencies, 99):6.0f}"
                    f" ms, max {max(latencies):6.0f} ms, complete p99 "
                    f"{percentile(complete, 99):6.0f} ms, "
                    if latencies
                    else ""
                )
                + f"CPU from commit for {cpu['wall']:.1f} s: server {server_cpu:.2f} s, "
                + f"loadgen {client_cpu:.2f} s, publisher {publisher_cpu:.2f} s, "
                + f"other {other_cpu:.2f} s (redis, postgres, foreign); "
                + f"load average {load_average():.2f}"
            )
            print(line, flush=True)
            if not record:
                continue
            row.latencies += latencies
            row.complete += complete
            row.received += received
            row.expected += expected
            if latencies:
                row.per_burst_p99.append(percentile(latencies, 99))
            for r in results:
                row.messages += [c for c in r["counts"] if c]
                row.fragments.update(r["fragments"])
            if path == "direct":
                row.publish_ms.append(publish_ms)
                row.render_ms.append(probe.render_ms)
                row.send_ms.append(probe.send_ms)
                row.pushed_bytes.append(probe.bytes)
            row.write_ms.append(write_seconds * 1000)
            row.server_cpu.append(server_cpu)
            row.client_cpu.append(client_cpu)
            row.publisher_cpu.append(publisher_cpu)
            row.other_cpu.append(other_cpu)
            row.loadavg.append(load_average())
            row.window_s.append(cpu["wall"])
            time.sleep(self.args.pause)

    def idle_load(self, workers: list[int], seconds: float) -> dict[str, float]:
        """Server CPU, PostgreSQL sessions and Redis connections per second with no pushes."""
        import redis
        from django.conf import settings
        from django.db import connection

        def sessions() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = %s", [DB_NAME]
                )
                return int(cursor.fetchone()[0])

        client = redis.Redis.from_url(settings.REDIS_URL)
        cpu0, pg0 = sum(cpu_seconds(pid) for pid in workers), sessions()
        redis0 = redis_connections_received(client)
        time.sleep(seconds)
        cpu1, pg1 = sum(cpu_seconds(pid) for pid in workers), sessions()
        redis1 = redis_connections_received(client)
        client.close()
        return {
            "cpu": (cpu1 - cpu0) / seconds,
            # Less our own: one PostgreSQL session, one Redis connection (counters may lag).
            "pg_sessions": max(0, pg1 - pg0 - 1) / seconds,
            "redis_connections": max(0, redis1 - redis0 - 1) / seconds,
        }

    def cpu_snapshot(self, workers: list[int], generators: LoadGenerators) -> dict[str, float]:
        return {
            "wall": time.time(),
            "server": sum(cpu_seconds(pid) for pid in workers),
            "loadgen": sum(cpu_seconds(pid) for pid in generators.pids()),
            "bench": sum(os.times()[:2]),
            "celery": sum(cpu_seconds(pid) for pid in self.celery_pids),
            "machine": machine_busy_seconds(),
        }

    def _collect(self, generators: LoadGenerators) -> list[Any]:
        return generators.call(
            "collect",
            [{"timeout": self.args.timeout, "quiet": 0.3}] * len(generators.pipes),
            timeout=self.args.timeout + 30,
        )

    def check_origin(self, port: int, url: str) -> None:
        """Which Origin headers the server accepts (AllowedHostsOriginValidator)."""
        from websockets.sync.client import connect

        for origin in (None, f"http://127.0.0.1:{port}", "http://evil.example"):
            try:
                with connect(
                    url,
                    origin=origin,  # type: ignore[arg-type]
                    open_timeout=10,
                    close_timeout=2,
                    compression=None,
                ) as ws:
                    first = ws.recv(timeout=20)
                    verdict = (
                        "accepted (snapshot received)"
                        if 'id="board-metrics"' in str(first)
                        else "accepted?"
                    )
            except Exception as error:
                verdict = f"refused ({type(error).__name__}: {str(error)[:60]})"
            note = f"Origin {origin or '(none)'}: {verdict}"
            print("  " + note, flush=True)
            self.notes.append(note)

    def run_workers(self, workers: int, generators_count: int) -> None:
        args = self.args
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws/boards/{BOARD_SLUG}/?kiosk={self.token}"
        origin = f"http://127.0.0.1:{port}"
        print(
            f"\n== uvicorn --workers {workers} on 127.0.0.1:{port}",
            flush=True,
        )
        server = start_server(workers, port, self.env)
        generators: LoadGenerators | None = None
        try:
            if not self.origin_checked:
                self.check_origin(port, url)
                self.origin_checked = True
            worker_pids = server_workers(server)
            print(f"  server pids {server.tree()}, serving workers {worker_pids}", flush=True)
            rss_idle = sum(rss_mb(pid) for pid in server.tree())
            print(f"  server RSS with no screens: {rss_idle:.1f} MB", flush=True)
            generators = LoadGenerators(generators_count)
            for screens in args.screens:
                self.check_time()
                grown = generators.grow(screens, url, origin, args.batch, timeout=args.timeout)
                print(
                    f"  screens: {grown['total']} open (+{grown['opened']} in "
                    f"{grown['seconds']:.1f} s, {grown['opened'] / grown['seconds']:.0f}/s)"
                    + (f", errors {grown['errors']}" if grown["errors"] else ""),
                    flush=True,
                )
                if grown["total"] < screens:
                    note = (
                        f"workers={workers}: only {grown['total']} of {screens} screens connected "
                        f"(handshake + snapshot timeout {args.timeout:.0f} s): {grown['errors']}"
                    )
                    print("  " + note, flush=True)
                    self.notes.append(note)
                time.sleep(2)  # let connect-time work (registrations) settle
                worker_pids = server_workers(server)
                rss_connected = sum(rss_mb(pid) for pid in server.tree())
                idle = self.idle_load(worker_pids, seconds=10)
                print(
                    f"  server RSS {rss_connected:.1f} MB with {grown['total']} screens "
                    f"({', '.join(f'{rss_mb(p):.0f}' for p in worker_pids)} MB per worker; "
                    f"sockets per worker {[socket_count(p) for p in worker_pids]}); idle: server "
                    f"CPU {idle['cpu']:.3f} s/s, {idle['pg_sessions']:.1f} new PostgreSQL "
                    f"sessions/s, {idle['redis_connections']:.1f} new Redis connections/s "
                    f"(all Redis clients)",
                    flush=True,
                )
                for path in args.paths:
                    row = Row(path=path, workers=workers, screens=screens)
                    row.split = args.split and path == "direct"
                    row.rss_connected = rss_connected
                    row.connected = grown["total"]
                    row.idle_server_cpu = idle["cpu"]
                    row.idle_pg_sessions = idle["pg_sessions"]
                    row.idle_redis_connections = idle["redis_connections"]
                    self.measure(row, path, generators, worker_pids, args.bursts)
                    row.rss_after = sum(rss_mb(pid) for pid in server.tree())
                    row.rss_per_worker = [rss_mb(pid) for pid in worker_pids]
                    row.sockets_per_worker = [socket_count(pid) for pid in worker_pids]
                    self.rows.append(row)
                    print("  " + json.dumps(row.summary()), flush=True)
                if args.profile and screens == max(args.screens):
                    self.profile(generators, worker_pids, workers, screens)
            if args.reconnect:
                self.reconnect(generators, workers, url, origin)
        finally:
            if generators is not None:
                generators.stop()
            server.stop()
            print(f"  server stopped (exit {server.process.returncode})", flush=True)

    def reconnect(
        self, generators: LoadGenerators, workers: int, url: str, origin: str | None
    ) -> None:
        """All screens drop and come back at once (as after a deploy): how fast do they?"""
        self.check_time()
        total = sum(generators.sizes)
        generators.broadcast("close", timeout=120)
        generators.sizes = [0] * len(generators.pipes)
        time.sleep(2)  # let the server forget them
        grown = generators.grow(total, url, origin, self.args.batch, timeout=self.args.timeout)
        note = (
            f"workers={workers}: reconnect of {total} screens at once: {grown['total']} back in "
            f"{grown['seconds']:.1f} s ({grown['total'] / grown['seconds']:.0f}/s)"
            + (f", errors {grown['errors']}" if grown["errors"] else "")
        )
        print("  " + note, flush=True)
        self.notes.append(note)

    def profile(
        self, generators: LoadGenerators, worker_pids: list[int], workers: int, screens: int
    ) -> None:
        """Sample the server workers with py-spy during extra direct bursts."""
        out_dir = Path(self.args.profile)
        out_dir.mkdir(parents=True, exist_ok=True)
        spies = []
        targets = [("server", pid) for pid in worker_pids] + [
            ("loadgen", pid) for pid in generators.pids()
        ]
        for kind, pid in targets:
            output = out_dir / f"{kind}-w{workers}-n{screens}-{pid}.txt"
            spies.append(
                (
                    output,
                    subprocess.Popen(
                        [
                            self.args.py_spy,
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(PROFILE_RATE),
                            "--format",
                            "raw",
                            "--nonblocking",
                            "--threads",
                            "--output",
                            str(output),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    ),
                )
            )
        time.sleep(1.5)
        spied_from = time.monotonic()
        row = Row(path="direct", workers=workers, screens=screens)
        try:
            self.measure(row, "direct", generators, worker_pids, 3, record=False)
        finally:
            for _, spy in spies:
                with contextlib.suppress(ProcessLookupError):
                    spy.send_signal(signal.SIGINT)
            spied_for = time.monotonic() - spied_from + 1.5
            for _, spy in spies:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
        for output, _ in spies:
            if output.exists():
                print(f"  profile {output}:", flush=True)
                print(summarize_profile(output, spied_for, PROFILE_RATE), flush=True)


class PublishProbe:
    """Times publish()'s rendering and sending in this process (direct path only).

    With ``split`` it also sends one message per changed fragment instead of the product's
    one concatenated message per group: what ``publish`` did before fragments were joined,
    kept to measure the difference (``--split``).
    """

    def __init__(self, split: bool) -> None:
        self.split = split
        self.render_ms = 0.0
        self.send_ms = 0.0
        self.messages = 0
        self.bytes = 0

    def __enter__(self) -> PublishProbe:
        import dashboard.publish as publishing

        self.real_render = publishing.render_group
        self.real_send = publishing.send_batch

        def render_group(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return self.real_render(*args, **kwargs)
            finally:
                self.render_ms += (time.perf_counter() - started) * 1000

        def send_batch(messages: list[tuple[str, str]]) -> None:
            if self.split:
                messages = [
                    (group, part)
                    for group, html in messages
                    for part in re.split(r'(?=<section id=")', html)
                    if part
                ]
            self.messages += len(messages)
            self.bytes += sum(len(html.encode()) for _, html in messages)
            started = time.perf_counter()
            try:
                self.real_send(messages)
            finally:
                self.send_ms += (time.perf_counter() - started) * 1000

        publishing.render_group = render_group
        publishing.send_batch = send_batch
        return self

    def __exit__(self, *exc: object) -> None:
        import dashboard.publish as publishing

        publishing.render_group = self.real_render
        publishing.send_batch = self.real_send


CELERY_LINE = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): \w+/[^\]]*\] "
    r"Task dashboard\.publish\[[^\]]+\] (received|succeeded in ([\d.]+)s)"
)


def celery_task_timing(lines: list[str], t0: float) -> str:
    """'received +X ms, ran +Y..+Z ms' after the commit, from the worker's INFO log."""
    parts = []
    for line in lines:
        match = CELERY_LINE.search(line)
        if match is None:
            continue
        stamp = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
        if match[3] == "received":
            parts.append(f"received +{(stamp - t0) * 1000:.0f}")
        else:
            ran = float(match[4])
            parts.append(f"ran +{(stamp - ran - t0) * 1000:.0f}..+{(stamp - t0) * 1000:.0f}")
    return ", ".join(parts) + " ms" if parts else "(no publish task logged)"


def _no_mark_dirty(ticket_ids: Any = None) -> None:
    """Stands in for dashboard.publish.mark_dirty while seeding and in the direct path."""


def summarize_profile(path: Path, seconds: float, rate: int, top: int = 18) -> str:
    """Per-thread busy share, and self / inclusive sample shares, from py-spy raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            threads[frames[0].split(": ", 1)[-1]] += count
            frames = frames[1:]
        names = [_short(frame) for frame in frames]
        if not names:
            continue
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "    (no samples)"
    lines = [f"    {total} samples in {seconds:.1f} s at {rate} Hz; busy share per thread:"]
    lines += [
        f"    {100 * n / (seconds * rate):5.1f}%  {name}" for name, n in threads.most_common(6)
    ]
    lines.append("    top self (share of samples):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("    top inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'function (path/to/module.py:123)' -> 'function (module.py)'."""
    name, _, location = frame.partition(" (")
    filename = location.split(":")[0].rstrip(")")
    parts = filename.split("/")
    keep = parts.index("site-packages") + 1 if "site-packages" in parts else len(parts) - 2
    parts = parts[keep:]
    return f"{name} ({'/'.join(parts)})"


# --- database and Redis -------------------------------------------------------------------------


def admin_conninfo() -> dict[str, Any]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    info: dict[str, Any] = {"dbname": "postgres", "autocommit": True}
    for key, name in (
        ("HOST", "host"),
        ("PORT", "port"),
        ("USER", "user"),
        ("PASSWORD", "password"),
    ):
        if db.get(key):
            info[name] = db[key]
    return info


def create_database() -> None:
    import psycopg
    from django.core.management import call_command

    with psycopg.connect(**admin_conninfo()) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
            print(f"created database {DB_NAME}", flush=True)
    call_command("migrate", verbosity=0, interactive=False)


def drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(**admin_conninfo()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    print(f"dropped database {DB_NAME}", flush=True)


# --- output -------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = (
        "| path | variant | workers | screens | msgs/push | p50 ms | p99 ms | max ms "
        "| complete p99 ms | received | server RSS MB (connected → after) | server CPU s/burst "
        "| loadgen CPU s/burst | load avg |"
    )
    lines = [header, "|" + "---|" * 14]
    for row in rows:
        s = row.summary()

        def ms(value: float | None) -> str:
            return "—" if value is None else f"{value:.0f}"

        cpu = sorted(row.server_cpu)[len(row.server_cpu) // 2] if row.server_cpu else 0
        client = sorted(row.client_cpu)[len(row.client_cpu) // 2] if row.client_cpu else 0
        lines.append(
            f"| {row.path} | {row.variant()} | {row.workers} | {row.screens} "
            f"| {s['messages_per_push']} "
            f"| {ms(s['p50_ms'])} | {ms(s['p99_ms'])} | {ms(s['max_ms'])} "
            f"| {ms(s['complete_p99_ms'])} | {row.received}/{row.expected}"
            + (
                f" ({row.connected} of {row.screens} connected)"
                if row.connected < row.screens
                else ""
            )
            + " "
            f"| {row.rss_connected:.0f} → {row.rss_after:.0f} | {cpu:.2f} | {client:.2f} "
            f"| {min(row.loadavg, default=0):.1f}–{max(row.loadavg, default=0):.1f} |"
        )
    return "\n".join(lines)


def parse_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    global DB_NAME
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--screens", type=parse_ints, default=[100, 500, 1000])
    parser.add_argument("--workers", type=parse_ints, default=[1], help="e.g. 1 or 1,2")
    parser.add_argument(
        "--paths",
        type=lambda t: [p for p in t.split(",") if p],
        default=["direct", "celery"],
        help="direct (publish() in the bench process) and/or celery (mark_dirty + a worker)",
    )
    parser.add_argument("--bursts", type=int, default=3, help="bursts per screen count and path")
    parser.add_argument("--changes", type=int, default=200, help="product writes per burst")
    parser.add_argument("--new", type=int, default=10, help="of which tickets opened")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--batch", type=int, default=50, help="concurrent handshakes")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, close every screen and reconnect them all at once (a deploy)",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="direct path: one message per changed fragment (emulates the unjoined publish)",
    )
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument(
        "--database",
        default=DB_NAME,
        help="PostgreSQL database to create, use and drop (one per concurrent bench run)",
    )
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server at the top count")
    parser.add_argument("--py-spy", default="py-spy", help="py-spy executable for --profile")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if args.paths and set(args.paths) - {"direct", "celery"}:
        parser.error("--paths takes direct and/or celery")

    DB_NAME = args.database
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CHANNEL_PREFIX": f"benchpush{os.getpid()}",
            "DJANGO_SETTINGS_MODULE": "slaboard.settings",
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    import redis

    client = redis.Redis.from_url(redis_url)
    if client.dbsize():
        sys.exit(f"Redis db {args.redis_db} is not empty: choose another --redis-db")

    import django

    django.setup()

    import dashboard.publish as publishing

    bench = Bench(args, env)
    for name in ("dashboard/publish.py", "dashboard/consumers.py", "dashboard/boards.py"):
        digest = hashlib.sha1((ROOT / name).read_bytes(), usedforsecurity=False).hexdigest()
        bench.notes.append(f"{name} sha1 {digest[:12]}")
    bench.real_mark_dirty = publishing.mark_dirty
    publishing.mark_dirty = _no_mark_dirty  # seeding must not queue publish tasks
    worker: Subprocess | None = None
    started = time.monotonic()
    try:
        create_database()
        bench.setup_data()
        if "celery" in args.paths:
            worker = start_celery(env)
            bench.celery_pids = worker.tree()
            bench.celery = worker
            print(f"celery worker ready (pids {bench.celery_pids})", flush=True)
        for workers in args.workers:
            bench.run_workers(workers, args.clients)
    finally:
        if worker is not None:
            worker.stop()
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with contextlib.suppress(Exception):
                drop_database()
        client.flushdb()  # our dedicated Redis database (checked empty at the start)
        client.close()
    print(f"\ntotal {time.monotonic() - started:.0f} s; {args.clients} load-generator process(es)")
    for note in bench.notes:
        print(note)
    print()
    print(table(bench.rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "notes": bench.notes,
                    "rows": [row.summary() for row in bench.rows],
                },
                indent=2,
            )
        )
    return 0
