"""Accounts, quota and charges through the admin API and the official SDKs:
each call is charged exactly what the price table says of the usage the
upstream reported, failures cost nothing, a client that leaves early pays
for what it got, and a balance that cannot cover a call refuses it."""

import math
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import ADMIN_TOKEN, KEY, Admin, gateway_config, postgres_database, start_gateway


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request, built, demo):
    """The same tests on each store: a gateway on a SQLite file, then one
    on a fresh PostgreSQL schema."""
    executable, _ = built
    database_url = postgres_database() if request.param == "postgres" else None
    process = start_gateway(executable, gateway_config(demo.url), database_url=database_url)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(gateway):
    return Admin(gateway.url)


def gpt(gateway, key):
    return openai.OpenAI(api_key=key, base_url=f"{gateway.url}/v1", max_retries=0, timeout=20)


def claude(gateway, key):
    return anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0, timeout=20)


def reported(demo, request_id):
    return httpx.get(f"{demo.url}/demo/usage/{request_id}").json()


def price(tokens):
    """The `*` price of conftest: prompt 1, completion 2, cached 0.1,
    cache writes 1.25 units a token, rounded up."""
    plain = tokens["prompt_tokens"] - tokens["cached_tokens"] - tokens["cache_write_tokens"]
    millionths = (plain * 1_000_000 + tokens["cached_tokens"] * 100_000
                  + tokens["cache_write_tokens"] * 1_250_000 + tokens["completion_tokens"] * 2_000_000)
    return math.ceil(millionths / 1_000_000)


def request_id(label):
    return f"bill-{label}-{uuid.uuid4().hex[:10]}"


def balance(admin, user):
    return admin.get(f"/users/{user}")["balance"]


def wait_for_balance(admin, user, expected, wait=10.0):
    deadline = time.monotonic() + wait
    while balance(admin, user) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert balance(admin, user) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_is_charged_the_price_of_the_usage_the_upstream_reported(gateway, admin, demo, stream):
    user, key = admin.new_key(1_000_000)
    rid = request_id("ok")
    request = dict(model="demo/cached-4/reasoning-3", messages=[{"role": "user", "content": "Hello"}],
                   extra_headers={"x-request-id": rid})
    if stream:
        assert list(gpt(gateway, key["key"]).chat.completions.create(stream=True, **request))
    else:
        gpt(gateway, key["key"]).chat.completions.create(**request)
    row = admin.call(rid)
    tokens = reported(demo, rid)
    assert row["charge"] == row["priced"] == price(tokens) > 0
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
        tokens["prompt_tokens"], tokens["completion_tokens"], tokens["cached_tokens"])
    assert (row["ending"], row["usage_source"], row["stream"], row["key_id"]) == ("complete", "upstream", stream, key["id"])
    assert row["held"] >= row["charge"]
    wait_for_balance(admin, user, 1_000_000 - row["charge"])
    assert admin.get("/keys", user_id=user)[0]["used"] == row["charge"]


def test_anthropic_cache_writes_are_priced_at_their_own_ratio(gateway, admin, demo):
    _, key = admin.new_key(1_000_000)
    rid = request_id("cache-write")
    claude(gateway, key["key"]).messages.create(
        model="claude-demo/cached-4/cache-write-2", max_tokens=64,
        messages=[{"role": "user", "content": "Hello"}], extra_headers={"x-request-id": rid})
    row = admin.call(rid)
    tokens = reported(demo, rid)
    assert tokens["cache_write_tokens"] == 2
    assert row["cache_write_tokens"] == 2
    assert row["charge"] == price(tokens)


def test_an_upstream_without_usage_is_charged_by_sluices_count_and_marked_estimated(gateway, admin):
    user, key = admin.new_key(1_000_000)
    rid = request_id("estimated")
    chunks = list(gpt(gateway, key["key"]).chat.completions.create(
        model="demo/no-usage", stream=True, messages=[{"role": "user", "content": "Hello"}],
        extra_headers={"x-request-id": rid}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    row = admin.call(rid)
    assert row["usage_source"] == "estimated"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] >= len(text.split()) // 2
    assert row["charge"] == row["prompt_tokens"] + 2 * row["completion_tokens"]
    wait_for_balance(admin, user, 1_000_000 - row["charge"])


@pytest.mark.parametrize("model", ["demo/status-500", "demo/drop-3"])
def test_a_failed_call_costs_nothing(gateway, admin, model):
    user, key = admin.new_key(1_000_000)
    rid = request_id("failed")
    with pytest.raises(openai.APIError):
        stream = gpt(gateway, key["key"]).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "Hello"}],
            extra_headers={"x-request-id": rid})
        list(stream)
    row = admin.call(rid)
    assert row["charge"] == 0 and row["ending"] in ("refused", "upstream_error")
    wait_for_balance(admin, user, 1_000_000)
    assert admin.get("/keys", user_id=user)[0]["used"] == 0


def test_a_client_that_leaves_mid_stream_pays_for_what_it_got_and_no_more(gateway, admin, demo):
    user, key = admin.new_key(1_000_000)
    rid = request_id("gone")
    received = ""
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=20,
                      headers={"Authorization": f"Bearer {key['key']}", "x-request-id": rid},
                      json={"model": "demo/stall-30/words-200", "stream": True,
                            "messages": [{"role": "user", "content": "Hello"}]}) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                received += line
            if received.count("content") >= 3:
                break
    row = admin.call(rid)
    assert row["ending"] == "client_gone"
    assert row["usage_source"] == "estimated"
    assert 0 < row["completion_tokens"] < 200
    assert row["charge"] == row["prompt_tokens"] + 2 * row["completion_tokens"] > 0
    wait_for_balance(admin, user, 1_000_000 - row["charge"])


def leave_anthropic_stream(gateway, key, rid, text_deltas):
    """Streams a long Anthropic answer and hangs up after `text_deltas`
    text deltas (0: right after `message_start`)."""
    seen = 0
    with httpx.stream("POST", f"{gateway.url}/v1/messages", timeout=20,
                      headers={"x-api-key": key["key"], "anthropic-version": "2023-06-01", "x-request-id": rid},
                      json={"model": "claude-demo/stall-30/words-200", "stream": True, "max_tokens": 1024,
                            "messages": [{"role": "user", "content": "Hello"}]}) as response:
        for line in response.iter_lines():
            seen += '"text_delta"' in line
            if seen >= text_deltas and (seen or "message_start" in line):
                break


def test_leaving_an_anthropic_passthrough_stream_pays_for_the_text_received(gateway, admin):
    user, key = admin.new_key(1_000_000)
    rid = request_id("gone-passthrough")
    leave_anthropic_stream(gateway, key, rid, text_deltas=3)
    row = admin.call(rid)
    assert (row["ending"], row["usage_source"]) == ("client_gone", "estimated")
    assert 0 < row["completion_tokens"] < 200
    assert row["charge"] == row["prompt_tokens"] + 2 * row["completion_tokens"]
    wait_for_balance(admin, user, 1_000_000 - row["charge"])


def test_leaving_an_anthropic_passthrough_stream_before_its_text_pays_nothing(gateway, admin):
    user, key = admin.new_key(1_000_000)
    rid = request_id("gone-passthrough-early")
    leave_anthropic_stream(gateway, key, rid, text_deltas=0)
    row = admin.call(rid)
    assert (row["ending"], row["charge"]) == ("client_gone", 0)
    wait_for_balance(admin, user, 1_000_000)


def test_a_client_that_leaves_before_any_output_pays_nothing(gateway, admin):
    user, key = admin.new_key(1_000_000)
    rid = request_id("gone-early")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", timeout=0.3,
                   headers={"Authorization": f"Bearer {key['key']}", "x-request-id": rid},
                   json={"model": "demo/slow-1000", "messages": [{"role": "user", "content": "Hello"}]})
    row = admin.call(rid)
    assert (row["ending"], row["charge"]) == ("client_gone", 0)
    wait_for_balance(admin, user, 1_000_000)


def test_a_balance_that_cannot_cover_the_call_refuses_it_in_each_sdks_shape(gateway, admin):
    user, key = admin.new_key(10)
    with pytest.raises(openai.RateLimitError) as caught:
        gpt(gateway, key["key"]).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello"}])
    assert caught.value.code == "insufficient_quota"
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude(gateway, key["key"]).messages.create(
            model="claude-demo", max_tokens=64, messages=[{"role": "user", "content": "Hello"}])
    assert refused.value.status_code in (400, 402, 429)
    assert balance(admin, user) == 10
    assert admin.get("/calls", key_id=key["id"])["total"] == 0


def test_a_key_cap_limits_the_key_not_the_user(gateway, admin):
    user, capped = admin.new_key(1_000_000, quota_cap=2000)
    with pytest.raises(openai.RateLimitError) as caught:
        gpt(gateway, capped["key"]).chat.completions.create(
            model="demo", max_tokens=5000, messages=[{"role": "user", "content": "Hello"}])
    assert "key has spent 0 of its 2000" in caught.value.message
    gpt(gateway, capped["key"]).chat.completions.create(
        model="demo", max_tokens=50, messages=[{"role": "user", "content": "Hello"}])


def test_keys_are_shown_once_stored_hashed_and_revoked_at_once(gateway, admin):
    user, key = admin.new_key(1_000_000, name="ci")
    assert key["key"].startswith("sk-sl-") and key["prefix"] == key["key"][:10]
    listed = admin.get("/keys", user_id=user)
    assert "key" not in listed[0] and listed[0]["prefix"] == key["prefix"]
    client = gpt(gateway, key["key"])
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    admin.send("PATCH", f"/keys/{key['id']}", {"status": "disabled"})
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    admin.send("PATCH", f"/keys/{key['id']}", {"status": "active", "expires_at": 1})
    with pytest.raises(openai.AuthenticationError) as expired:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    assert "expired" in expired.value.message
    admin.send("PATCH", f"/keys/{key['id']}", {"expires_at": 0, "models": ["demo-tools"]})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    admin.send("PATCH", f"/users/{user}", {"status": "disabled"})
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo-tools", messages=[{"role": "user", "content": "Hi"}])


def test_a_reused_request_id_is_refused_not_charged_twice(gateway, admin):
    user, key = admin.new_key(1_000_000)
    rid = request_id("twice")
    client = gpt(gateway, key["key"])
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                   extra_headers={"x-request-id": rid})
    with pytest.raises(openai.ConflictError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                       extra_headers={"x-request-id": rid})
    charge = admin.call(rid)["charge"]
    wait_for_balance(admin, user, 1_000_000 - charge)
    assert admin.get("/calls", key_id=key["id"])["total"] == 1


def test_top_ups_and_adjustments_are_recorded_with_their_reason(gateway, admin):
    user, _ = admin.new_key(0)
    admin.send("POST", f"/users/{user}/top-up", {"amount": 500, "reason": "invoice 42"})
    admin.send("POST", f"/users/{user}/adjust", {"amount": -120, "reason": "refund correction"})
    refused = admin.client.post(f"/users/{user}/adjust", json={"amount": -1000, "reason": "too much"})
    assert refused.status_code == 400
    assert balance(admin, user) == 380
    entries = admin.get(f"/users/{user}/ledger")
    assert [(e["kind"], e["amount"], e["balance_after"], e["reason"]) for e in entries] == [
        ("adjust", -120, 380, "refund correction"), ("top_up", 500, 500, "invoice 42")]


def test_usage_statistics_and_call_pages(gateway, admin):
    user, key = admin.new_key(1_000_000)
    client = gpt(gateway, key["key"])
    ids = [request_id("stats") for _ in range(3)]
    for rid, model in zip(ids, ["demo", "demo-tools", "demo"]):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                       extra_headers={"x-request-id": rid})
    rows = [admin.call(rid) for rid in ids]
    by_model = {line["key"]: line for line in admin.get("/usage", by="model", key_id=key["id"])}
    assert by_model["demo"]["requests"] == 2 and by_model["demo-tools"]["requests"] == 1
    assert sum(line["charge"] for line in by_model.values()) == sum(r["charge"] for r in rows)
    for dimension in ("day", "user", "key", "channel", "tenant"):
        lines = admin.get("/usage", by=dimension, key_id=key["id"])
        assert sum(line["requests"] for line in lines) == 3
    page = admin.get("/calls", key_id=key["id"], page=2, page_size=2)
    assert (page["total"], len(page["data"])) == (3, 1)
    assert page["data"][0]["request_id"] == ids[0]


def test_the_admin_api_needs_its_token_and_describes_itself(gateway):
    assert httpx.get(f"{gateway.url}/admin/users").status_code == 401
    assert httpx.get(f"{gateway.url}/admin/users", headers={"Authorization": "Bearer wrong"}).status_code == 401
    document = httpx.get(f"{gateway.url}/admin/openapi.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert document["openapi"].startswith("3.")
    for path in ("/admin/users/{id}/top-up", "/admin/keys", "/admin/calls", "/admin/usage", "/admin/channels/{name}"):
        assert path in document["paths"]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for response in (
        httpx.post(f"{gateway.url}/admin/users", headers=admin, content=b"{not json", timeout=10),
        httpx.post(f"{gateway.url}/admin/users", headers=admin, json={"name": "no tenant"}, timeout=10),
        httpx.get(f"{gateway.url}/admin/usage", headers=admin, params={"by": "weekday"}, timeout=10),
    ):
        assert response.status_code in (400, 415, 422)
        assert response.json()["error"]["code"] in ("invalid_body", "invalid_query")


def test_channels_and_prices_change_without_a_restart(gateway, admin, demo):
    _, key = admin.new_key(1_000_000)
    client = gpt(gateway, key["key"])
    admin.send("PUT", "/channels/extra-channel", {
        "base_url": f"{demo.url}/v1", "models": ["extra-model"], "api_key": "sk-stored-secret-1234"})
    listed = {c["name"]: c for c in admin.get("/channels")}
    assert listed["extra-channel"]["has_api_key"] and "api_key" not in listed["extra-channel"]
    admin.send("PUT", "/prices/extra-model", {"model_ratio": 0, "completion_ratio": 0, "per_call": 7})
    rid = request_id("per-call")
    client.chat.completions.create(model="extra-model", messages=[{"role": "user", "content": "Hi"}],
                                   extra_headers={"x-request-id": rid})
    row = admin.call(rid)
    assert (row["channel"], row["charge"]) == ("extra-channel", 7)
    admin.send("PATCH", "/channels/extra-channel", {"status": "disabled"})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="extra-model", messages=[{"role": "user", "content": "Hi"}])


def test_the_seeded_key_still_works(gateway):
    assert gpt(gateway, KEY).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}]).choices
