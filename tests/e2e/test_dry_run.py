"""Dry runs: a new router or pricing version replayed over a tenant's
recorded calls beside the version serving now, deterministically, with the
differences reported; and activation that requires a clean dry run."""

import base64

import httpx
import openai
import pytest

from conftest import Admin, gateway_config, start_gateway

MESSAGES = [{"role": "user", "content": "Hello"}]
HALF_PRICE = "\n[config]\nstart_hour = 0\nend_hour = 24\ndiscount_percent = 50\n"
BUILT_IN_ORDER = "fast-provider,cheap-provider,demo-channel"
BATCH_ORDER = "cheap-provider,fast-provider,demo-channel"


def upload_body(folder, name, version, config=None):
    lines = []
    for line in (folder / "plugin.toml").read_text().splitlines():
        key = line.split("=")[0].strip()
        if key == "[config]" and config is not None:
            break
        lines.append({"name": f'name = "{name}"', "version": f'version = "{version}"'}.get(key, line))
    component = base64.b64encode((folder / "plugin.wasm").read_bytes()).decode()
    return {"manifest": "\n".join(lines) + "\n" + (config or ""), "component": component}


@pytest.fixture(scope="module")
def world(built, demo):
    executable, bundles = built
    process = start_gateway(executable, gateway_config(demo.url))
    admin = Admin(process.url)
    for name, priority in (("fast-provider", 10), ("cheap-provider", 5)):
        admin.send("PUT", f"/channels/{name}", {"base_url": f"{demo.url}/v1", "models": ["demo"],
                                                 "priority": priority, "api_key_env": "SLUICE_E2E_UPSTREAM_KEY"})
    _, key = admin.new_key(100_000_000, tenant="initech", tags=["batch"])
    token = admin.client.post("/tenants/initech/admin-tokens").json()["token_value"]
    limits = {"kinds": ["router", "pricing"], "max_bundle_bytes": 4 << 20, "memory_mib": 16, "deadline_ms": 50,
              "require_dry_run": True}
    admin.send("PUT", "/tenants/initech/plugin-limits", limits)
    client = openai.OpenAI(api_key=key["key"], base_url=f"{process.url}/v1", max_retries=0, timeout=30)
    ids = [client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=32)
           .headers["x-request-id"] for model in ["demo"] * 12 + ["fault/loop"] * 2]
    rows = [admin.call(request_id) for request_id in ids]
    tenant = httpx.Client(base_url=f"{process.url}/admin", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    yield {"admin": admin, "tenant": tenant, "client": client, "rows": rows, "bundles": bundles}
    process.stop()


def test_a_router_version_is_replayed_and_activation_waits_for_a_clean_run(world):
    tenant, bundles, rows = world["tenant"], world["bundles"], world["rows"]
    assert all(row["channel"] == "fast-provider" for row in rows if row["model"] == "demo")
    at_once = tenant.post("/plugins", json={**upload_body(bundles / "batch-router", "initech-router", "1.0.0"),
                                            "activate": True})
    assert at_once.status_code == 409, "activating as it is uploaded would skip the dry run"
    assert at_once.json()["error"]["code"] == "dry_run_required"
    assert tenant.get("/plugins").json() == [], "nothing was stored"
    assert tenant.post("/plugins", json=upload_body(bundles / "batch-router", "initech-router", "1.0.0")).status_code == 201

    refused = tenant.post("/plugins/initech-router/activate", json={"version": "1.0.0"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "dry_run_required"

    report = tenant.post("/plugins/initech-router/dry-run", json={"version": "1.0.0"})
    assert report.status_code == 200, report.text
    report = report.json()
    assert report["plugin"] == "initech-router@1.0.0" and report["active"] == "router@0.1.0"
    assert report["calls"] == 14 and report["faults"] == 0 and report["clean"] is True
    assert report["routing"] == {"routed_elsewhere": 12, "order_changed": 12}
    assert report["pricing"] is None
    demo_ids = {row["request_id"] for row in rows if row["model"] == "demo"}
    assert len(report["examples"]) == 10
    for example in report["examples"]:
        assert example["request_id"] in demo_ids
        assert (example["active"], example["new"]) == (BUILT_IN_ORDER, BATCH_ORDER)
    again = tenant.post("/plugins/initech-router/dry-run", json={"version": "1.0.0"}).json()
    assert again == report, "a replay is deterministic"

    activated = tenant.post("/plugins/initech-router/activate", json={"version": "1.0.0"})
    assert activated.status_code == 200, activated.text
    raw = world["client"].chat.completions.with_raw_response.create(model="demo", messages=MESSAGES, max_tokens=32)
    assert world["admin"].call(raw.headers["x-request-id"])["channel"] == "cheap-provider"

    # A version that faults on recorded calls has no clean run.
    faulty = upload_body(bundles / "faulty-router", "initech-router", "2.0.0")
    assert tenant.post("/plugins", json=faulty).status_code == 201
    report = tenant.post("/plugins/initech-router/dry-run", json={"version": "2.0.0"}).json()
    assert report["faults"] == 2 and report["clean"] is False
    assert all(e["new"].startswith("fault: exceeded its") for e in report["examples"] if "fault" in e["new"])
    refused = tenant.post("/plugins/initech-router/activate", json={"version": "2.0.0"})
    assert refused.status_code == 409 and "faulted" in refused.json()["error"]["message"]


def test_a_pricing_version_reports_how_every_charge_would_change(world):
    tenant, bundles, admin = world["tenant"], world["bundles"], world["admin"]
    upload = upload_body(bundles / "offpeak-pricing", "initech-pricing", "1.0.0", config=HALF_PRICE)
    assert tenant.post("/plugins", json=upload).status_code == 201
    report = tenant.post("/plugins/initech-pricing/dry-run", json={"version": "1.0.0", "calls": 500}).json()
    recorded = admin.get("/calls", tenant_id="initech", page_size=1000)["data"]
    charged = [row for row in recorded if row["usage_source"] != "none"]
    assert report["calls"] == len(charged) >= 15
    pricing = report["pricing"]
    assert pricing["charged_calls"] == len(charged)
    assert pricing["total_active"] == sum(row["priced"] for row in charged), "the replay reprices exactly"
    assert pricing["total_new"] == sum(-(-row["priced"] // 2) for row in charged)
    assert pricing["difference"] == pricing["total_new"] - pricing["total_active"] < 0
    assert pricing["charges_changed"] == sum(1 for row in charged if row["priced"] > 1)
    assert report["clean"] is True and report["routing"] is None
    limited = tenant.post("/plugins/initech-pricing/dry-run", json={"version": "1.0.0", "calls": 3}).json()
    assert limited["calls"] == 3
    assert tenant.post("/plugins/initech-pricing/activate", json={"version": "1.0.0"}).status_code == 200
    audit = tenant.get("/audit").json()
    assert any(e["action"] == "POST /admin/plugins/initech-pricing/dry-run" and e["content_hash"] for e in audit)
