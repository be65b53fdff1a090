"""Tenants bring their own router and pricing: a tenant's admin token
reaches only its own plugins; its pricing charges its users while the
operator's pricing of each call is logged beside it; its plugins live
within the limits the operator sets; and whatever it uploads, a fault in
it fails only its own requests."""

import base64
import concurrent.futures

import httpx
import openai
import pytest

from conftest import ADMIN_TOKEN, Admin, gateway_config, start_gateway

MESSAGES = [{"role": "user", "content": "Hello"}]
# Off-peak all day, at half price: the tenant's users pay half the ratio model.
HALF_PRICE = "\n[config]\nstart_hour = 0\nend_hour = 24\ndiscount_percent = 50\n"


def upload_body(folder, name, version, config=None, activate=True):
    manifest = (folder / "plugin.toml").read_text()
    lines = []
    for line in manifest.splitlines():
        key = line.split("=")[0].strip()
        if key == "[config]" and config is not None:
            break
        lines.append({"name": f'name = "{name}"', "version": f'version = "{version}"'}.get(key, line))
    text = "\n".join(lines) + "\n" + (config or "")
    component = base64.b64encode((folder / "plugin.wasm").read_bytes()).decode()
    return {"manifest": text, "component": component, "activate": activate}


def token_client(url, token):
    return httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def tenants(built, demo):
    """A gateway with tenants acme and globex, each with a user, a key and
    an admin token of its own."""
    executable, bundles = built
    process = start_gateway(executable, gateway_config(demo.url))
    admin = Admin(process.url)
    world = {"gateway": process, "bundles": bundles, "admin": admin}
    for tenant in ("acme", "globex"):
        user, key = admin.new_key(10_000_000, tenant=tenant)
        token = admin.client.post(f"/tenants/{tenant}/admin-tokens")
        assert token.status_code == 201, token.text
        world[tenant] = {
            "user": user,
            "client": openai.OpenAI(api_key=key["key"], base_url=f"{process.url}/v1", max_retries=0, timeout=30),
            "admin": token_client(process.url, token.json()["token_value"]),
            "token": token.json(),
        }
    yield world
    process.stop()


def test_a_tenant_token_reaches_only_its_own_plugins(tenants):
    acme = tenants["acme"]["admin"]
    bundles = tenants["bundles"]
    for method, path in [("GET", "/channels"), ("GET", "/keys"), ("GET", "/users"), ("GET", "/calls"),
                         ("GET", "/plugins/metrics"), ("GET", "/tenants"), ("PUT", "/prices/x"),
                         ("POST", "/tenants/acme/admin-tokens"), ("PUT", "/tenants/acme/plugin-limits"),
                         ("GET", "/plugins?tenant=globex"), ("POST", "/plugins/router/rollback?tenant=globex")]:
        response = acme.request(method, path, json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    for kind_folder, name in [("faulty-translator", "acme-translator"), ("risk", "acme-risk")]:
        response = acme.post("/plugins", json=upload_body(bundles / kind_folder, name, "1.0.0"))
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "kind_not_allowed"
    assert token_client(tenants["gateway"].url, "sk-sl-admin-forged").get("/plugins").status_code == 401
    # What one tenant uploads is invisible to the other.
    uploaded = acme.post("/plugins", json=upload_body(bundles / "batch-router", "acme-batch", "1.0.0", activate=False))
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["uploaded_by"] == "tenant:acme"
    assert [v["name"] for v in acme.get("/plugins").json()] == ["acme-batch"]
    assert tenants["globex"]["admin"].get("/plugins").json() == []
    assert tenants["admin"].get("/plugins") == [], "the operator's scope is apart"
    assert [v["name"] for v in tenants["admin"].get("/plugins", tenant="acme")] == ["acme-batch"]
    globex_tries = tenants["globex"]["admin"].post("/plugins/acme-batch/activate", json={"version": "1.0.0"})
    assert globex_tries.status_code == 404
    audit = acme.get("/audit").json()
    assert audit and {entry["actor"] for entry in audit} == {"tenant:acme"}
    assert any(e["status"] == 403 and e["action"] == "PUT /admin/prices/x" for e in audit), \
        "refused attempts are audited too"


def test_a_tenant_prices_its_users_and_the_operator_prices_the_tenant(tenants):
    admin, bundles = tenants["admin"], tenants["bundles"]
    acme, globex = tenants["acme"], tenants["globex"]
    response = acme["admin"].post("/plugins", json=upload_body(bundles / "offpeak-pricing", "acme-pricing", "2.0.0",
                                                               config=HALF_PRICE))
    assert response.status_code == 201, response.text
    assert response.json()["active"] is True

    before = {t: admin.get(f"/users/{tenants[t]['user']}")["balance"] for t in ("acme", "globex")}
    ids = {}
    for tenant in ("acme", "globex"):
        raw = tenants[tenant]["client"].chat.completions.with_raw_response.create(
            model="demo", messages=MESSAGES, max_tokens=64)
        ids[tenant] = raw.headers["x-request-id"]
    rows = {t: admin.call(ids[t]) for t in ids}
    acme_row, globex_row = rows["acme"], rows["globex"]
    assert acme_row["pricing_plugin"].startswith("acme-pricing@2.0.0#")
    assert globex_row["pricing_plugin"].startswith("pricing@0.1.0#")
    assert acme_row["operator_priced"] > 0
    assert acme_row["priced"] == -(-acme_row["operator_priced"] // 2), "half of the operator's price, rounded up"
    assert globex_row["priced"] == globex_row["operator_priced"]
    for tenant, row in rows.items():
        after = admin.get(f"/users/{tenants[tenant]['user']}")["balance"]
        assert before[tenant] - after == row["charge"] == row["priced"], tenant

    rolled_back = acme["admin"].post("/plugins/pricing/rollback")
    assert rolled_back.json() == {"slot": "pricing", "active": None}
    raw = acme["client"].chat.completions.with_raw_response.create(model="demo", messages=MESSAGES, max_tokens=64)
    row = admin.call(raw.headers["x-request-id"])
    assert row["pricing_plugin"].startswith("pricing@0.1.0#") and row["priced"] == row["operator_priced"]


def test_a_tenant_plugin_fault_fails_only_that_tenants_requests(tenants):
    admin, bundles = tenants["admin"], tenants["bundles"]
    acme, globex = tenants["acme"], tenants["globex"]
    limits = {"kinds": ["router"], "max_bundle_bytes": 4 << 20, "memory_mib": 8, "deadline_ms": 20,
              "require_dry_run": False}
    assert admin.send("PUT", "/tenants/acme/plugin-limits", limits) == limits
    refused = acme["admin"].post("/plugins", json=upload_body(bundles / "pricing", "acme-pricing", "3.0.0"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "kind_not_allowed"
    too_big = admin.send("PUT", "/tenants/acme/plugin-limits", {**limits, "max_bundle_bytes": 1000})
    assert too_big["max_bundle_bytes"] == 1000
    response = acme["admin"].post("/plugins", json=upload_body(bundles / "faulty-router", "acme-router", "1.0.0"))
    assert response.status_code == 413, response.text
    admin.send("PUT", "/tenants/acme/plugin-limits", limits)
    response = acme["admin"].post("/plugins", json=upload_body(bundles / "faulty-router", "acme-router", "1.0.0"))
    assert response.status_code == 201, response.text

    def call(tenant, model):
        try:
            tenants[tenant]["client"].chat.completions.create(model=model, messages=MESSAGES, max_tokens=16)
            return "ok"
        except openai.APIStatusError as error:
            return error.body["code"]

    faults = {"fault/loop": "plugin_deadline:acme-router", "fault/allocate": "plugin_out_of_memory:acme-router",
              "fault/panic": "plugin_trap:acme-router"}
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        acme_calls = [pool.submit(call, "acme", model) for model in faults for _ in range(3)]
        globex_calls = [pool.submit(call, "globex", model) for model in faults for _ in range(6)]
        assert [f.result() for f in globex_calls] == ["ok"] * len(globex_calls)
        assert sorted(f.result() for f in acme_calls) == sorted(code for code in faults.values() for _ in range(3))
    assert call("acme", "demo") == "ok", "the tenant's ordinary calls still serve"
    assert call("globex", "demo") == "ok"

    # The limits are the tenant's, not the manifest's (50 ms, 16 MiB).
    with pytest.raises(openai.InternalServerError) as looped:
        acme["client"].chat.completions.create(model="fault/loop", messages=MESSAGES)
    assert "20ms deadline" in looped.value.body["message"]
    with pytest.raises(openai.InternalServerError) as hoarded:
        acme["client"].chat.completions.create(model="fault/allocate", messages=MESSAGES)
    assert f"memory cap of {8 << 20} bytes" in hoarded.value.body["message"]
    figures = {r["plugin"]: r for r in admin.get("/plugins/metrics")}
    assert figures["acme-router"]["failures"]["plugin_out_of_memory"] >= 4

    # Taking the kind away stops the tenant's active plugin of that kind.
    admin.send("PUT", "/tenants/acme/plugin-limits", {**limits, "kinds": ["pricing"]})
    assert call("acme", "fault/loop") == "ok", "the operator's router serves once routers are not allowed"
    admin.send("PUT", "/tenants/acme/plugin-limits", limits)
    assert call("acme", "fault/loop") == "plugin_deadline:acme-router"

    assert acme["admin"].post("/plugins/acme-router/rollback").json() == {"slot": "router", "active": None}
    assert call("acme", "fault/loop") == "ok", "the operator's router serves the tenant again"

    revoked = admin.client.delete(f"/tenants/acme/admin-tokens/{acme['token']['id']}")
    assert revoked.status_code == 200
    assert acme["admin"].get("/plugins").status_code == 401
