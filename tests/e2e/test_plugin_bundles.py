"""Plugin bundles through the admin API: uploaded versions are checked
before they are stored, activated atomically, rolled back, kept across a
restart, recorded in the audit log, and followed by every replica sharing
one PostgreSQL database."""

import base64
import pathlib
import time

import httpx
import openai
import pytest

from conftest import ADMIN_TOKEN, KEY, Admin, gateway_config, postgres_database, start_gateway

MESSAGES = [{"role": "user", "content": "Hello"}]

# Self-tests for the faulty router, which keeps the candidates' order for
# ordinary models and loops for `fault/loop`.
PASSING_TEST = """
[[tests]]
name = "keeps the candidates' order"
candidates = [{ name = "a" }, { name = "b" }]
expect = { order = ["a", "b"] }
"""
WRONG_ORDER_TEST = PASSING_TEST.replace('["a", "b"] }', '["b", "a"] }')
LOOPING_TEST = """
[[tests]]
name = "loops"
request = { model = "fault/loop" }
candidates = [{ name = "a" }]
expect = { order = ["a"] }
"""


def bundle_upload(folder, name=None, version=None, kind=None, component=None, activate=False, tests=""):
    """The admin API's upload body for the bundle in `folder`, renamed,
    re-versioned, re-kinded, with another component or with self-tests
    (manifest text) appended when asked."""
    manifest = (folder / "plugin.toml").read_text()
    lines = []
    for line in manifest.splitlines():
        key = line.split("=")[0].strip()
        if name and key == "name":
            line = f'name = "{name}"'
        elif version and key == "version":
            line = f'version = "{version}"'
        elif kind and key == "kind":
            line = f'kind = "{kind}"'
        lines.append(line)
    component = component if component is not None else (folder / "plugin.wasm").read_bytes()
    return {"manifest": "\n".join(lines) + "\n" + tests, "component": base64.b64encode(component).decode(),
            "activate": activate}


def faulty_router_serves(client):
    """`fault/bad-index` makes the faulty router answer out of range; the
    built-in router does not look at the model."""
    try:
        client.chat.completions.create(model="fault/bad-index", messages=MESSAGES)
        return False
    except openai.InternalServerError as error:
        assert error.body["code"] == "plugin_bad_output:router"
        return True


def admin_client(url):
    return httpx.Client(base_url=f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


def test_upload_activate_roll_back_survive_a_restart_and_audit(built, demo, tmp_path):
    executable, bundles = built
    config = gateway_config(demo.url)
    process = start_gateway(executable, config, directory=str(tmp_path))
    restarted = None
    try:
        client = openai.OpenAI(api_key=KEY, base_url=f"{process.url}/v1", max_retries=0, timeout=20)
        admin = admin_client(process.url)
        faulty = bundles / "faulty-router"

        passing = PASSING_TEST
        uploaded = admin.post("/plugins", json=bundle_upload(faulty, name="router", version="9.0.0", tests=passing))
        assert uploaded.status_code == 201, uploaded.text
        version = uploaded.json()
        assert version["name"] == "router" and version["version"] == "9.0.0" and version["kind"] == "router"
        assert len(version["content_hash"]) == 64 and version["uploaded_by"] == "operator"
        assert version["active"] is False
        assert not faulty_router_serves(client), "an upload alone changes nothing"

        # Refusals, each with its reason, and nothing stored.
        refusals = [
            (bundle_upload(faulty, name="router", version="9.0.0",
                           component=(bundles / "router" / "plugin.wasm").read_bytes()), 409, "conflict"),
            (bundle_upload(faulty, name="router", version="9.0.1", component=b"\0asm not really"),
             422, "invalid_bundle"),
            (bundle_upload(faulty, name="router", version="9.0.2", kind="pricing"), 422, "invalid_bundle"),
            ({**bundle_upload(faulty, version="9.0.3"), "component": "%%%"}, 400, "invalid_component"),
            ({**bundle_upload(faulty, version="9.0.4"), "manifest": "name = 'x'"}, 400, "invalid_manifest"),
            (bundle_upload(faulty, name="router", version="9.0.5", tests=WRONG_ORDER_TEST), 422, "invalid_bundle"),
            (bundle_upload(faulty, name="router", version="9.0.6", tests=LOOPING_TEST), 422, "invalid_bundle"),
        ]
        for body, status, code in refusals:
            response = admin.post("/plugins", json=body)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
        kind_mismatch = admin.post("/plugins", json=refusals[2][0]).json()["error"]["message"]
        assert "pricing" in kind_mismatch
        wrong_order = admin.post("/plugins", json=refusals[5][0]).json()["error"]["message"]
        assert 'self-tests failed: "keeps the candidates\' order": order: expected ["b", "a"], got ["a", "b"]' in wrong_order
        looping = admin.post("/plugins", json=refusals[6][0]).json()["error"]["message"]
        assert "deadline" in looping
        listed = admin.get("/plugins").json()
        assert [(v["name"], v["version"]) for v in listed] == [("router", "9.0.0")]

        activated = admin.post("/plugins/router/activate", json={"version": "9.0.0"})
        assert activated.status_code == 200, activated.text
        assert activated.json() == {"slot": "router", "active": "router@9.0.0"}
        assert faulty_router_serves(client), "activation serves at once on this replica"
        assert client.chat.completions.create(model="demo", messages=MESSAGES).choices
        assert admin.get("/plugins", params={"name": "router"}).json()[0]["active"] is True
        missing = admin.post("/plugins/router/activate", json={"version": "0.0.0"})
        assert missing.status_code == 404

        rolled_back = admin.post("/plugins/router/rollback")
        assert rolled_back.json() == {"slot": "router", "active": None}
        assert not faulty_router_serves(client), "the built-in router serves again"
        again = admin.post("/plugins/router/rollback")
        assert again.json() == {"slot": "router", "active": "router@9.0.0"}
        assert faulty_router_serves(client)

        process.stop()
        restarted = start_gateway(executable, config, directory=str(tmp_path))
        client = openai.OpenAI(api_key=KEY, base_url=f"{restarted.url}/v1", max_retries=0, timeout=20)
        assert faulty_router_serves(client), "a restart serves the same active version"

        entries = admin_client(restarted.url).get("/audit").json()
        actions = [(e["action"], e["status"], e["target"]) for e in reversed(entries)]
        assert actions[0] == ("POST /admin/plugins", 201, "plugin router@9.0.0")
        assert ("POST /admin/plugins", 409, "plugin router@9.0.0") in actions
        assert ("POST /admin/plugins", 422, "plugin router@9.0.1") in actions
        assert ("POST /admin/plugins/router/activate", 200, "plugin router@9.0.0") in actions
        assert ("POST /admin/plugins/router/activate", 404, "/admin/plugins/router/activate") in actions
        assert ("POST /admin/plugins/router/rollback", 200, "plugin slot router") in actions
        assert all(e["actor"] == "operator" and e["at"] > 0 for e in entries)
        accepted = {e["content_hash"] for e in entries if e["target"] == "plugin router@9.0.0" and e["status"] < 300}
        assert accepted == {version["content_hash"]}
        refused = [e for e in entries if e["status"] == 409]
        assert refused[0]["content_hash"] not in accepted, "what was attempted is recorded"

        paths = httpx.get(f"{restarted.url}/admin/openapi.json", timeout=10,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["paths"]
        assert {"/admin/plugins", "/admin/plugins/{name}/activate", "/admin/plugins/{name}/rollback",
                "/admin/audit"} <= set(paths)
    finally:
        process.stop()
        if restarted:
            restarted.stop()


def test_a_replica_serves_what_another_activated_within_two_seconds(built, demo):
    executable, bundles = built
    database = postgres_database()
    config = gateway_config(demo.url)
    first = start_gateway(executable, config, database_url=database)
    second = start_gateway(executable, config, database_url=database)
    try:
        follower = openai.OpenAI(api_key=KEY, base_url=f"{second.url}/v1", max_retries=0, timeout=20)
        assert not faulty_router_serves(follower)
        admin = admin_client(first.url)
        body = bundle_upload(bundles / "faulty-router", name="router", version="fleet-1", activate=True)
        response = admin.post("/plugins", json=body)
        assert response.status_code == 201, response.text
        activated_at = time.monotonic()
        while not faulty_router_serves(follower):
            assert time.monotonic() - activated_at < 2.0, "the second replica did not follow within 2 s"
            time.sleep(0.02)
        assert admin.post("/plugins/router/rollback").status_code == 200
        rolled_back_at = time.monotonic()
        while faulty_router_serves(follower):
            assert time.monotonic() - rolled_back_at < 2.0, "the rollback did not reach the second replica"
            time.sleep(0.02)
    finally:
        first.stop()
        second.stop()
