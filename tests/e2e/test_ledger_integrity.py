"""The ledger under load and across a crash, on SQLite and on PostgreSQL.

Money must balance whatever happens to a call. A thousand concurrent calls
over fifty users, mixing answers, streams, upstream failures, upstreams
that report no usage, clients that hang up mid-stream, users who run out
of quota and clients that reuse a request id, must leave, for every key:

    starting balance - balance == sum of its call-log charges == key `used`

with no balance below zero, exactly one call-log row per admitted request
id, nothing charged for refusals and failures, and no more charged to a
departed client than its answer so far was priced at.

A gateway killed with SIGKILL while streams are open must, once restarted
under the same ledger instance on the same database, log every call it had
admitted as `interrupted`, refund each in full, and leave no hold behind:
nothing lost, nothing charged twice, a request id still spent.
"""

import asyncio
import collections
import dataclasses
import random
import re
import tempfile
import time
import uuid

import httpx
import pytest

from conftest import Admin, gateway_config, postgres_database, start_gateway

TENANT = "ledger"
BACKENDS = ["sqlite", "postgres"]
# Every request caps its answer, so a hold is about 150 units (prompt
# estimate + 64 completion tokens at 2 units) while a demo answer costs
# about 40: a user with 300 units can hold two calls at once and runs out
# after a handful; a user with a million never does.
MAX_TOKENS = 64
RICH, POOR = 1_000_000, 300
KEYS, POOR_KEYS = 50, 6
REQUESTS, CONCURRENCY = 1000, 64
PROMPT = [{"role": "user", "content": "hi"}]
# The `*` price of gateway_config: 1 unit per prompt token, 2 per completion token.
PROMPT_RATIO, COMPLETION_RATIO = 1, 2
# How calls may end without anything charged.
UNCHARGED = {"upstream_error", "timeout", "plugin_fault", "refused", "interrupted"}
SETTLE_WAIT = 30.0


def backend_database(backend):
    return postgres_database() if backend == "postgres" else None


def config_text(demo_url, extra=""):
    return gateway_config(demo_url) + extra


def body(model, stream, **extra):
    return {"model": model, "messages": PROMPT, "stream": stream, "max_tokens": MAX_TOKENS, **extra}


# --- The load: what each request does, and what its client saw ---------------------------

# Kinds of request, with their share of the load. `abort-*` read one or two
# chunks of a stream and hang up; `stall-40` spaces the stream's events 40 ms
# apart, so those hang up genuinely mid-stream. `replay` reuses the request id
# of another request of the load.
MIX = [
    ("plain", 20),          # non-stream, answered
    ("stream", 20),         # stream, answered (sometimes asking for usage)
    ("status-500", 8),      # the upstream answers 500 (stream or not)
    ("drop", 8),            # the upstream cuts the stream after 3 events
    ("no-usage", 10),       # answered, the upstream reports no usage (stream or not)
    ("abort", 6),           # the client leaves a fast stream after its first chunk
    ("abort-slow", 14),     # the client leaves a slow stream after one or two chunks
    ("replay", 4),          # a request id already used by another request of the load
]


@dataclasses.dataclass
class Request:
    index: int
    request_id: str
    key: int
    kind: str
    model: str
    stream: bool
    extra: dict = dataclasses.field(default_factory=dict)
    abort_after: int = 0  # chunks to read before hanging up (0: read it all)


@dataclasses.dataclass
class Seen:
    """What the client saw of one request."""

    status: int = 0
    code: str = ""
    echoed_id: str = ""
    chunks: int = 0
    aborted: bool = False
    text: str = ""
    error: str = ""  # a transport failure, never expected

    @property
    def admitted(self):
        """Whether Sluice took a hold for it: every answer but the refusals
        that happen before (quota) or at (duplicate id) the hold."""
        return self.status != 0 and self.status not in (409, 429)


def plan(rng, run):
    """The load: REQUESTS requests over KEYS keys, reproducible from `rng`."""
    kinds = [kind for kind, share in MIX for _ in range(share)]
    requests = []
    for index in range(REQUESTS):
        kind = rng.choice(kinds) if index >= 20 else "plain"
        key = rng.randrange(KEYS)
        request_id = f"ledger-{run}-{index:04d}"
        stream = True
        model = "demo"
        extra = {}
        abort_after = 0
        if kind == "plain":
            stream = False
        elif kind == "stream":
            if rng.random() < 0.5:
                extra = {"stream_options": {"include_usage": True}}
        elif kind == "status-500":
            model, stream = "demo/status-500", rng.random() < 0.5
        elif kind == "drop":
            model = "demo/drop-3"
        elif kind == "no-usage":
            model, stream = "demo/no-usage", rng.random() < 0.5
        elif kind == "abort":
            abort_after = 1
        elif kind == "abort-slow":
            model = rng.choice(["demo/stall-40", "demo/stall-40/no-usage"])
            abort_after = rng.choice([1, 2])
        elif kind == "replay":
            stream = False
            request_id = requests[rng.randrange(len(requests))].request_id
        requests.append(Request(index, request_id, key, kind, model, stream, extra, abort_after))
    return requests


async def send(client, secret, request):
    """Sends `request` with `secret`, as its kind says; what the client saw."""
    seen = Seen()
    headers = {"Authorization": f"Bearer {secret}", "x-request-id": request.request_id}
    payload = body(request.model, request.stream, **request.extra)
    try:
        if not request.stream:
            response = await client.post("/v1/chat/completions", json=payload, headers=headers)
            read_reply(seen, response, response.content)
            return seen
        async with client.stream("POST", "/v1/chat/completions", json=payload, headers=headers) as response:
            if response.status_code != 200:
                read_reply(seen, response, await response.aread())
                return seen
            read_reply(seen, response, b"")
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                seen.chunks += 1
                if request.abort_after and seen.chunks >= request.abort_after:
                    # Leaving the block closes the connection mid-stream.
                    seen.aborted = b"[DONE]" not in received
                    break
            seen.text = received.decode("utf-8", "replace")
    except httpx.HTTPError as error:
        seen.error = f"{type(error).__name__}: {error}"
    return seen


def read_reply(seen, response, content):
    seen.status = response.status_code
    seen.echoed_id = response.headers.get("x-request-id", "")
    if response.status_code != 200 and content:
        try:
            seen.code = response.json().get("error", {}).get("code") or ""
        except ValueError:
            seen.code = "<not json>"
    elif content:
        seen.text = content.decode("utf-8", "replace")


async def run_load(url, secrets, requests):
    """Sends every request, CONCURRENCY at a time; what each client saw."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    timeout = httpx.Timeout(20.0, connect=5.0)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        async def one(request):
            async with gate:
                return await send(client, secrets[request.key], request)
        return await asyncio.wait_for(asyncio.gather(*(one(r) for r in requests)), timeout=120)


# --- Reading the ledger back ----------------------------------------------------------------

def all_calls(admin):
    """Every call-log row of the test tenant."""
    rows, page = [], 1
    while True:
        answer = admin.get("/calls", tenant_id=TENANT, page=page, page_size=1000)
        rows += answer["data"]
        if page * answer["page_size"] >= answer["total"]:
            return rows
        page += 1


def key_used(admin, key_ids):
    return {key["id"]: key["used"] for key in admin.get("/keys") if key["id"] in key_ids}


def balances(admin):
    return {user["id"]: user["balance"] for user in admin.get("/users", tenant_id=TENANT)}


def charges_by_key(rows):
    sums = collections.Counter()
    for row in rows:
        sums[row["key_id"]] += row["charge"]
    return sums


def settled_ledger(admin, key_ids, expected_rows):
    """The call log, once it holds `expected_rows` rows and every key's
    `used` equals its charges (no hold left open); after SETTLE_WAIT
    seconds, whatever it holds then, for the assertions to explain."""
    deadline = time.monotonic() + SETTLE_WAIT
    while True:
        rows = all_calls(admin)
        used = key_used(admin, key_ids)
        sums = charges_by_key(rows)
        if (len(rows) >= expected_rows and all(used[k] == sums[k] for k in key_ids)) \
                or time.monotonic() > deadline:
            return rows, used
        time.sleep(0.1)


def new_accounts(admin, balances_wanted):
    """A user with each of `balances_wanted` and a key of theirs:
    [(user id, key id, secret)]."""
    accounts = []
    for balance in balances_wanted:
        user, key = admin.new_key(balance, tenant=TENANT)
        accounts.append((user, key["id"], key["key"]))
    return accounts


def assert_books_balance(admin, accounts, starting, rows, used):
    """starting - balance == charges == used, and no balance below zero, per key."""
    now = balances(admin)
    sums = charges_by_key(rows)
    wrong = []
    for (user, key_id, _), start in zip(accounts, starting):
        if not (start - now[user] == sums[key_id] == used[key_id]) or now[user] < 0:
            wrong.append(f"{key_id}: start {start} balance {now[user]} (spent {start - now[user]}), "
                         f"charges {sums[key_id]}, used {used[key_id]}")
    assert not wrong, "books do not balance:\n" + "\n".join(wrong)


# --- 1. Integrity under concurrent mixed load -------------------------------------------------

@pytest.fixture(params=BACKENDS)
def ledger_gateway(request, built, demo):
    executable, _ = built
    process = start_gateway(executable, config_text(demo.url), database_url=backend_database(request.param))
    yield request.param, process
    process.stop()


def test_a_thousand_concurrent_calls_balance_the_books(ledger_gateway):
    backend, gateway = ledger_gateway
    admin = Admin(gateway.url)
    rng = random.Random(20260305)
    starting = [POOR if index < POOR_KEYS else RICH for index in range(KEYS)]
    accounts = new_accounts(admin, starting)
    key_ids = [key_id for _, key_id, _ in accounts]
    requests = plan(rng, uuid.uuid4().hex[:8])

    began = time.monotonic()
    seen = asyncio.run(run_load(gateway.url, [secret for _, _, secret in accounts], requests))
    load_seconds = time.monotonic() - began

    # What the clients saw: only the answers the mix can produce.
    failures = [(r.request_id, s.error) for r, s in zip(requests, seen) if s.error]
    assert not failures, f"transport failures: {failures[:10]}"
    wrong_id = [(r.request_id, s.echoed_id) for r, s in zip(requests, seen) if s.echoed_id != r.request_id]
    assert not wrong_id, f"x-request-id not echoed: {wrong_id[:10]}"
    for request, reply in zip(requests, seen):
        expected = {"status-500": {502}, "replay": {200, 409}}.get(request.kind, {200})
        assert reply.status in expected | {429, 409}, (request, reply.status, reply.code)
        if reply.status == 429:
            assert reply.code == "insufficient_quota", (request.request_id, reply.code)
        if reply.status == 409:
            assert reply.code == "duplicate_request_id", (request.request_id, reply.code)

    # Per request id: at most one request admitted; the others refused as duplicates.
    by_id = collections.defaultdict(list)
    for request, reply in zip(requests, seen):
        by_id[request.request_id].append((request, reply))
    admitted = {}
    for request_id, sent in by_id.items():
        taken = [(r, s) for r, s in sent if s.admitted]
        assert len(taken) <= 1, f"{request_id} admitted {len(taken)} times: {[s.status for _, s in taken]}"
        if taken:
            admitted[request_id] = taken[0]
        if len(sent) > 1 and taken:
            assert all(s.status in (409, 429) for r, s in sent if s is not taken[0][1]), request_id
    quota_refused = {r.request_id for r, s in zip(requests, seen) if s.status == 429} - admitted.keys()

    rows, used = settled_ledger(admin, key_ids, len(admitted))

    # One row per admitted request id, none for anything else.
    logged = collections.Counter(row["request_id"] for row in rows)
    twice = {request_id: n for request_id, n in logged.items() if n > 1}
    assert not twice, f"request ids logged more than once: {twice}"
    missing = sorted(admitted.keys() - logged.keys())
    assert not missing, f"{len(missing)} admitted calls have no call-log row: {missing[:20]}"
    unexpected = sorted(logged.keys() - admitted.keys())
    assert not unexpected, f"call-log rows for requests never admitted: {unexpected[:20]}"
    assert len(rows) == len(admitted)

    by_row = {row["request_id"]: row for row in rows}
    for request_id, (request, reply) in admitted.items():
        row = by_row[request_id]
        assert row["key_id"] == key_ids[request.key], (request_id, row["key_id"])
        assert row["held"] > 0, row
        assert 0 <= row["charge"] <= row["priced"], row
        if row["ending"] in UNCHARGED:
            assert (row["charge"], row["priced"]) == (0, 0), row
        if row["ending"] in ("complete", "client_gone") and row["usage_source"] != "none":
            tokens = PROMPT_RATIO * row["prompt_tokens"] + COMPLETION_RATIO * row["completion_tokens"]
            assert row["priced"] == tokens, row
        if row["usage_source"] == "none":
            assert row["charge"] == 0, row
        # How each kind may end.
        if request.kind == "status-500":
            assert row["ending"] == "refused" and row["status"] == 502, row
        elif request.kind == "drop":
            assert row["ending"] == "upstream_error", row
            assert "upstream_disconnected" in reply.text, (request_id, reply.text[-300:])
        elif request.kind in ("plain", "stream", "no-usage", "replay"):
            assert row["ending"] == "complete" and row["charge"] > 0, row
            if request.stream:
                assert reply.text.endswith("data: [DONE]\n\n"), (request_id, reply.text[-300:])
        elif reply.aborted:
            assert row["ending"] in ("client_gone", "complete"), row
        if request.kind == "no-usage" and row["ending"] == "complete":
            assert row["usage_source"] == "estimated", row
    for request_id in quota_refused:
        assert request_id not in by_row or by_row[request_id]["charge"] == 0, by_row[request_id]

    assert_books_balance(admin, accounts, starting, rows, used)
    per_key = {line["key"]: line["charge"] for line in admin.get("/usage", by="key", tenant_id=TENANT)}
    assert per_key == {k: v for k, v in charges_by_key(rows).items() if k in per_key}
    assert sum(per_key.values()) == sum(row["charge"] for row in rows)

    endings = collections.Counter(row["ending"] for row in rows)
    kinds = collections.Counter(r.kind for r in requests)
    statuses = collections.Counter(s.status for s in seen)
    aborted = sum(s.aborted for s in seen)
    mid_stream = sum(1 for row in rows if row["ending"] == "client_gone" and row["charge"] > 0)
    print(f"\n[{backend}] {REQUESTS} requests over {KEYS} keys in {load_seconds:.1f} s "
          f"(concurrency {CONCURRENCY}); kinds {dict(sorted(kinds.items()))}")
    print(f"[{backend}] statuses {dict(sorted(statuses.items()))}; {len(admitted)} admitted, "
          f"{len(quota_refused)} refused for quota, {aborted} clients hung up mid-stream")
    print(f"[{backend}] call-log endings {dict(sorted(endings.items()))}; "
          f"{mid_stream} departed clients charged for a partial answer; "
          f"total charged {sum(row['charge'] for row in rows)} units")
    # The mix really exercised what it is meant to.
    assert len(quota_refused) > 0 and endings["client_gone"] > 0 and mid_stream > 0
    assert endings["upstream_error"] > 0 and endings["refused"] > 0
    assert statuses[409] > 0


# --- 2. A crash mid-stream, and the restart that reconciles it ------------------------------

CRASH_KEYS, CRASH_STREAMS = 10, 24
# 250 ms between events: a demo answer streams for about 5 s, so every
# stream is still open when the gateway is killed.
SLOW_STREAM = "demo/stall-250"


async def open_streams(url, secrets, request_ids, on_first_bytes):
    """Streams SLOW_STREAM for each id until it ends or breaks; calls
    `on_first_bytes()` as each first receives bytes. For each id: (got
    bytes, read to the end, what broke it)."""
    results = {}

    async def one(client, secret, request_id):
        got = done = False
        broke = ""
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body(SLOW_STREAM, True),
                                     headers={"Authorization": f"Bearer {secret}", "x-request-id": request_id}) as response:
                assert response.status_code == 200, (request_id, response.status_code)
                received = b""
                async for chunk in response.aiter_raw():
                    if not got:
                        got = True
                        on_first_bytes()
                    received += chunk
                done = b"[DONE]" in received
        except httpx.HTTPError as error:
            broke = type(error).__name__
        results[request_id] = (got, done, broke)

    timeout = httpx.Timeout(20.0, connect=5.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=CRASH_STREAMS)) as client:
        await asyncio.gather(*(one(client, secrets[i % len(secrets)], rid) for i, rid in enumerate(request_ids)))
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_gateway_restarted_settles_every_open_call_as_interrupted(built, demo, backend):
    executable, _ = built
    directory = tempfile.mkdtemp(prefix="sluice-e2e-crash-")
    database_url = backend_database(backend)
    config = config_text(demo.url, '\n[billing]\ninstance = "crash-test"\n')
    gateway = start_gateway(executable, config, database_url=database_url, directory=directory)
    try:
        admin = Admin(gateway.url)
        starting = [RICH] * CRASH_KEYS
        accounts = new_accounts(admin, starting)
        key_ids = [key_id for _, key_id, _ in accounts]
        secrets = [secret for _, _, secret in accounts]
        run = uuid.uuid4().hex[:8]

        # Calls settled before the crash, which the restart must leave alone.
        before = []
        for index, secret in enumerate(secrets):
            request_id = f"crash-{run}-settled-{index}"
            response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body("demo", False),
                                  headers={"Authorization": f"Bearer {secret}", "x-request-id": request_id}, timeout=10)
            assert response.status_code == 200, response.text
            before.append(admin.call(request_id))

        # Open slow streams; once every one has received bytes, SIGKILL.
        streaming = [f"crash-{run}-stream-{index:02d}" for index in range(CRASH_STREAMS)]

        async def load_then_kill():
            started = asyncio.Event()
            count = 0

            def on_first_bytes():
                nonlocal count
                count += 1
                if count == len(streaming):
                    started.set()

            load = asyncio.create_task(open_streams(gateway.url, secrets, streaming, on_first_bytes))
            await asyncio.wait_for(started.wait(), timeout=15)
            held = sum(key_used(admin, key_ids).values()) - sum(row["charge"] for row in before)
            gateway.proc.kill()
            gateway.proc.wait(timeout=10)
            return held, await asyncio.wait_for(load, timeout=20)

        held_at_kill, streams = asyncio.run(load_then_kill())
    finally:
        gateway.stop()
    cut = [rid for rid, (got, done, broke) in streams.items() if got and not done]
    assert all(got for got, _, _ in streams.values())
    assert held_at_kill > 0, "the open streams held nothing at the kill"
    assert len(cut) == CRASH_STREAMS, f"streams the kill did not cut: {sorted(set(streams) - set(cut))}"

    # The same instance, on the same database.
    restarted = start_gateway(executable, config, database_url=database_url, directory=directory)
    try:
        admin = Admin(restarted.url)
        expected = len(before) + CRASH_STREAMS
        rows, used = settled_ledger(admin, key_ids, expected)
        logged = collections.Counter(row["request_id"] for row in rows)
        assert sorted(logged) == sorted([row["request_id"] for row in before] + streaming), logged
        assert set(logged.values()) == {1}, {rid: n for rid, n in logged.items() if n > 1}
        by_row = {row["request_id"]: row for row in rows}
        for request_id in cut:
            row = by_row[request_id]
            assert (row["ending"], row["charge"], row["priced"]) == ("interrupted", 0, 0), row
            assert row["held"] > 0, row
        # What the keys had on hold at the kill is exactly what was refunded.
        assert sum(by_row[rid]["held"] for rid in cut) == held_at_kill
        for row in before:
            now = by_row[row["request_id"]]
            assert (now["ending"], now["charge"]) == ("complete", row["charge"]), (row, now)
        assert_books_balance(admin, accounts, starting, rows, used)
        log = open(restarted.log.name, encoding="utf-8", errors="replace").read()
        reconciled = re.search(r"reconciled=(\d+)", log)
        assert reconciled and int(reconciled.group(1)) == CRASH_STREAMS, "the restart did not say what it refunded"

        # A reconciled request id stays spent, and the restarted gateway bills as before.
        headers = {"Authorization": f"Bearer {secrets[0]}"}
        replay = httpx.post(f"{restarted.url}/v1/chat/completions", json=body("demo", False),
                            headers={**headers, "x-request-id": cut[0]}, timeout=10)
        assert replay.status_code == 409, replay.text
        after = f"crash-{run}-after"
        response = httpx.post(f"{restarted.url}/v1/chat/completions", json=body("demo", False),
                              headers={**headers, "x-request-id": after}, timeout=10)
        assert response.status_code == 200, response.text
        assert admin.call(after)["ending"] == "complete"
        rows, used = settled_ledger(admin, key_ids, expected + 1)
        assert len(rows) == expected + 1
        assert_books_balance(admin, accounts, starting, rows, used)
        print(f"\n[{backend}] killed with {CRASH_STREAMS} streams open ({held_at_kill} units held); "
              f"the restart logged {CRASH_STREAMS} interrupted calls, refunded in full; "
              f"{len(before)} calls settled before the kill unchanged")
    finally:
        restarted.stop()
