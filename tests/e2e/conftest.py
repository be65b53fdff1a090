"""Starts real processes for the end-to-end tests: the demo upstream and
Sluice gateways configured against it, all on loopback ports the processes
choose themselves."""

import json
import os
import pathlib
import subprocess
import tempfile
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY = "sk-e2e-full-access-0001"
UPSTREAM_SECRET = "sk-upstream-secret-e2e-7f3a9c"
RESTRICTED_KEY = "sk-e2e-only-demo-0002"
ADMIN_TOKEN = "admin-e2e-token-5b1d"
# What the config's `*` price charges: 1 unit per prompt token, 2 per
# completion token, 0.1 per cached and 1.25 per cache-write prompt token.
PRICES = """
[[prices]]
model = "*"
model_ratio = 1.0
completion_ratio = 2.0
cached_ratio = 0.1
cache_write_ratio = 1.25
"""
POSTGRES = os.environ.get("SLUICE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def build():
    """Builds sluice; returns its executable and the bundles its build made."""
    out = subprocess.run(
        ["cargo", "build", "-p", "sluice", "--bin", "sluice", "--message-format=json-render-diagnostics"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    executable = bundles = None
    for line in out.splitlines():
        message = json.loads(line)
        if "#sluice@" not in message.get("package_id", ""):
            continue
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            executable = message["executable"]
        if message.get("reason") == "build-script-executed" and message.get("out_dir"):
            bundles = pathlib.Path(message["out_dir"]) / "bundles"
    assert executable and bundles, "cargo did not report the sluice binary and its build output"
    return executable, bundles


class Process:
    """A child process that announced `listening on http://ADDR`."""

    def __init__(self, args, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="sluice-e2e-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 60
        self.url = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on http://" in line:
                self.url = line.strip().split("listening on ")[1]
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError(f"{args[:2]} did not start; see {self.log.name}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def built():
    return build()


@pytest.fixture(scope="session")
def demo(built):
    executable, _ = built
    upstream = Process([executable, "demo-upstream", "--listen", "127.0.0.1:0"])
    yield upstream
    upstream.stop()


def gateway_config(demo_url, plugins=""):
    return f"""
listen = "127.0.0.1:0"
max_body_bytes = 65536

[upstream]
connect_timeout_ms = 1000
first_byte_timeout_ms = 1500
idle_timeout_ms = 1500

[[channels]]
name = "demo-channel"
base_url = "{demo_url}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
models = ["demo", "demo-tools", "demo/*", "fault/*"]

[[channels]]
name = "anthropic-channel"
protocol = "anthropic-messages"
base_url = "{demo_url}/v1"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
models = ["claude-demo", "claude-demo/*"]

[[channels]]
name = "gemini-channel"
protocol = "gemini"
base_url = "{demo_url}/v1beta"
api_key_env = "SLUICE_E2E_UPSTREAM_KEY"
models = ["gemini-demo", "gemini-demo.*"]

[[keys]]
key = "{KEY}"
tenant = "e2e"
user = "tester"
quota = 1000000000

[[keys]]
key = "{RESTRICTED_KEY}"
tenant = "e2e"
user = "restricted"
models = ["demo"]
quota = 1000000000

[admin]
token_env = "SLUICE_E2E_ADMIN_TOKEN"
{PRICES}
{plugins}
"""


def start_gateway(executable, config_text, log_format="text", database_url=None, directory=None):
    """Starts `sluice serve` on `config_text`, with its own SQLite file in
    `directory` (a new one unless given) or the database at `database_url`.
    Compiled plugins are cached across gateways (a debug build compiles them
    in about twenty seconds; the cache is keyed by content and engine)."""
    directory = directory or tempfile.mkdtemp(prefix="sluice-e2e-")
    database_url = database_url or f"sqlite://{directory}/sluice.db"
    path = pathlib.Path(directory) / "sluice.toml"
    cache = ROOT / "target" / "e2e-plugin-cache"
    path.write_text(config_text + f'\n[database]\nurl = "{database_url}"\n'
                    + f'\n[plugins.runtime]\ncache_dir = "{cache}"\n')
    env = {
        "RUST_LOG": "info",
        "SLUICE_LOG_FORMAT": log_format,
        "SLUICE_E2E_UPSTREAM_KEY": UPSTREAM_SECRET,
        "SLUICE_E2E_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    return Process([executable, "serve", "--config", str(path)], env=env)


def postgres_database():
    """A URL to a fresh schema of the PostgreSQL test database."""
    schema = f"e2e_{os.getpid()}_{time.monotonic_ns()}"
    subprocess.run(["psql", POSTGRES, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    return f"{POSTGRES}?options=-csearch_path%3D{schema}"


class Admin:
    """The admin API of one gateway."""

    def __init__(self, url):
        self.client = httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def get(self, path, **params):
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def send(self, method, path, body):
        response = self.client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def call(self, request_id, wait=10.0):
        """The call log row of `request_id`, waiting for its settlement."""
        deadline = time.monotonic() + wait
        while True:
            rows = self.get("/calls", request_id=request_id)["data"]
            if rows or time.monotonic() > deadline:
                assert rows, f"no call log for {request_id}"
                return rows[0]
            time.sleep(0.05)

    def new_key(self, balance, tenant="billing", **key):
        """A new user with `balance` units and a key of theirs: (user, key)."""
        if not any(t["id"] == tenant for t in self.get("/tenants")):
            self.send("POST", "/tenants", {"id": tenant})
        user = self.send("POST", "/users", {"tenant_id": tenant})
        if balance:
            self.send("POST", f"/users/{user['id']}/top-up", {"amount": balance, "reason": "test"})
        created = self.send("POST", "/keys", {"user_id": user["id"], **key})
        return user["id"], created


@pytest.fixture(scope="session")
def gateway(built, demo):
    executable, _ = built
    plugins = """
[plugins.config.risk]
terms = ["forbidden phrase"]
"""
    process = start_gateway(executable, gateway_config(demo.url, plugins))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def json_gateway(built, demo):
    """The plain chain, logging JSON lines: tests read what it metered."""
    executable, _ = built
    process = start_gateway(executable, gateway_config(demo.url), log_format="json")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def faulty_gateway(built, demo):
    """A gateway whose router is the test-only faulty plugin."""
    executable, bundles = built
    plugins = f"""
[plugins]
dir = "{bundles}"
router = "faulty-router"
"""
    process = start_gateway(executable, gateway_config(demo.url, plugins), log_format="json")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def failover_gateway(built, demo):
    """A gateway whose preferred channel is down (nothing listens on port 1)."""
    executable, _ = built
    dead = """
[[channels]]
name = "dead-channel"
base_url = "http://127.0.0.1:1/v1"
models = ["demo"]
priority = 10
"""
    process = start_gateway(executable, gateway_config(demo.url) + dead)
    yield process
    process.stop()


@pytest.fixture
def demo_stats(demo):
    def read():
        return httpx.get(f"{demo.url}/demo/stats").json()
    return read


@pytest.fixture(scope="session")
def admin(gateway):
    return Admin(gateway.url)
