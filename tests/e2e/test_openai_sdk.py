"""The official `openai` SDK against a real Sluice process in front of the
demo upstream: it must not notice it is not talking to OpenAI."""

import json
import pathlib
import socket
import time

import httpx
import openai
import pytest

from conftest import KEY, RESTRICTED_KEY, UPSTREAM_SECRET

EXPECTED = "Hello from the Sluice demo upstream! You said: «Ping ☕». Café ☕ naïve résumé 😀 — streaming works. "
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ping ☕"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]


def client(gateway, key=KEY):
    return openai.OpenAI(api_key=key, base_url=f"{gateway.url}/v1", max_retries=0, timeout=20)


def test_non_stream_answer_and_usage(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(model="demo", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.choices[0].message.content == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == len(EXPECTED.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


@pytest.mark.parametrize("model", ["demo", "demo/chunk-1", "demo/chunk-3", "demo/chunk-64"])
def test_stream_reassembles_at_any_chunking(gateway, model):
    stream = client(gateway).chat.completions.create(model=model, messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_usage_when_the_client_asks(gateway):
    stream = client(gateway).chat.completions.create(
        model="demo/chunk-5", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.completion_tokens == len(EXPECTED.split())
    assert [c for c in chunks[:-1] if c.usage is not None] == []


def test_no_usage_chunk_when_the_client_did_not_ask(gateway):
    chunks = list(client(gateway).chat.completions.create(model="demo", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks), "the usage-only chunk must not reach this client"
    assert all(c.usage is None for c in chunks)


def test_usage_on_the_finish_chunk_is_removed_but_the_finish_kept(gateway):
    chunks = list(client(gateway).chat.completions.create(
        model="demo/usage-on-finish", messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_tool_call_arguments_stream_as_valid_json(gateway):
    sdk = client(gateway)
    stream = sdk.chat.completions.create(model="demo-tools", messages=MESSAGES, tools=TOOLS, stream=True)
    calls = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = call.id or entry["id"]
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    arguments = json.loads(calls[0]["arguments"])
    whole = sdk.chat.completions.create(model="demo-tools", messages=MESSAGES, tools=TOOLS)
    assert arguments == json.loads(whole.choices[0].message.tool_calls[0].function.arguments)
    assert arguments["note"] == "café ☕ 😀"


def test_models_lists_what_the_key_may_use(gateway):
    assert sorted(m.id for m in client(gateway).models.list()) == ["claude-demo", "demo", "demo-tools", "gemini-demo"]
    assert [m.id for m in client(gateway, RESTRICTED_KEY).models.list()] == ["demo"]


def test_unknown_routes_and_methods_answer_in_openai_shape(gateway):
    response = httpx.get(f"{gateway.url}/v1/chat/completions")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = httpx.post(f"{gateway.url}/v1/nothing-here", headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_url"


def test_health_and_request_ids(gateway):
    response = httpx.get(f"{gateway.url}/healthz", headers={"x-request-id": "trace-42"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"] == "trace-42"


def expect_error(call, exception, status, code=None):
    with pytest.raises(exception) as caught:
        call()
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and "message" in body and "type" in body, body
    if code is not None:
        assert body["code"] == code, body
    return caught.value


def test_authentication_errors(gateway):
    bad = client(gateway, "sk-not-a-real-key-000")
    expect_error(lambda: bad.chat.completions.create(model="demo", messages=MESSAGES),
                 openai.AuthenticationError, 401, "invalid_api_key")
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "demo", "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_and_forbidden_models_are_not_found(gateway):
    expect_error(lambda: client(gateway).chat.completions.create(model="gpt-none", messages=MESSAGES),
                 openai.NotFoundError, 404, "model_not_found")
    restricted = client(gateway, RESTRICTED_KEY)
    expect_error(lambda: restricted.chat.completions.create(model="demo-tools", messages=MESSAGES),
                 openai.NotFoundError, 404, "model_not_found")


def test_malformed_requests_are_bad_requests(gateway):
    error = expect_error(lambda: client(gateway).chat.completions.create(model="demo", messages=[]),
                         openai.BadRequestError, 400)
    assert error.body["param"] == "messages"
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=b'{"model": "demo", "messages": [', headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": MESSAGES}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


def test_oversized_bodies_are_refused(gateway):
    huge = [{"role": "user", "content": "x" * 70_000}]
    error = expect_error(lambda: client(gateway).chat.completions.create(model="demo", messages=huge),
                         openai.APIStatusError, 413, "request_too_large")
    assert "65536" in error.body["message"]


def exchange(connection, head, body=b""):
    """Sends one HTTP/1.1 request on `connection` and reads its answer:
    (status, headers, body)."""
    connection.sendall(head.encode() + b"\r\n" + body)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed before an answer: {received!r}"
        received += chunk
    raw_head, rest = received.split(b"\r\n\r\n", 1)
    lines = raw_head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, "the connection closed in the middle of an answer"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def test_an_answer_given_before_the_body_is_read_closes_the_connection(gateway):
    """A refusal that comes before the body is read says `Connection: close`
    and closes, so a client never sends its next request into a connection
    the gateway is closing; an answer after the body was read keeps it."""
    host, port = gateway.url.removeprefix("http://").split(":")
    refused = [
        (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-wrong\r\n"
         "Content-Type: application/json\r\nContent-Length: 100\r\n", 401),
        (f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nx-api-key: sk-wrong\r\n"
         "anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: 100\r\n", 401),
        (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
         "Content-Type: application/json\r\nContent-Length: 100000\r\n", 413),
        (f"POST /admin/keys HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-wrong\r\n"
         "Content-Type: application/json\r\nContent-Length: 100\r\n", 401),
    ]
    for head, status in refused:
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            got, headers, body = exchange(connection, head)  # the body is never sent
            error = json.loads(body)["error"]
            assert got == status and (error.get("code") or error["type"]), body
            assert headers.get("connection") == "close", headers
            assert connection.recv(1) == b"", "the gateway closes the connection after saying so"

    request = json.dumps({"model": "demo", "messages": MESSAGES}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        for _ in range(3):
            got, headers, body = exchange(connection, head, request)
            assert got == 200 and "connection" not in headers, headers
            assert json.loads(body)["choices"][0]["message"]["content"] == EXPECTED


def test_a_chunked_body_is_read_whole(gateway):
    """A body sent in many chunks, without a length, is joined in order."""
    host, port = gateway.url.removeprefix("http://").split(":")
    request = json.dumps({"model": "demo", "messages": MESSAGES}).encode()
    pieces = [request[i:i + 7] for i in range(0, len(request), 7)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        got, headers, body = exchange(connection, head, chunked)
    assert got == 200, body
    assert "connection" not in headers, "a body read to its end keeps the connection"
    assert json.loads(body)["choices"][0]["message"]["content"] == EXPECTED


def test_upstream_failures_are_normalized(gateway):
    sdk = client(gateway)
    error = expect_error(lambda: sdk.chat.completions.create(model="demo/status-429", messages=MESSAGES),
                         openai.RateLimitError, 429, "rate_limit_exceeded")
    assert error.response.headers["retry-after"] == "1"
    expect_error(lambda: sdk.chat.completions.create(model="demo/status-500", messages=MESSAGES),
                 openai.InternalServerError, 502, "upstream_error")
    expect_error(lambda: sdk.chat.completions.create(model="demo/status-503", messages=MESSAGES),
                 openai.InternalServerError, 503, "upstream_overloaded")
    error = expect_error(lambda: sdk.chat.completions.create(model="demo/status-401", messages=MESSAGES),
                         openai.InternalServerError, 502, "upstream_error")
    assert "demo upstream" not in error.body["message"], "the upstream's own text must not leak"
    error = expect_error(lambda: sdk.chat.completions.create(model="demo/status-400", messages=MESSAGES),
                         openai.BadRequestError, 400, "demo_fault")
    assert "asked to fail" in error.body["message"]


def test_upstream_timeout_is_a_gateway_timeout(gateway):
    started = time.monotonic()
    expect_error(lambda: client(gateway).chat.completions.create(model="demo/slow-5000", messages=MESSAGES),
                 openai.InternalServerError, 504, "upstream_timeout")
    assert time.monotonic() - started < 4.5


def test_risk_denials_reach_the_client(gateway):
    denied = [{"role": "user", "content": "tell me the Forbidden Phrase"}]
    expect_error(lambda: client(gateway).chat.completions.create(model="demo", messages=denied),
                 openai.PermissionDeniedError, 403, "content_policy_violation")


def test_a_plugin_fault_is_a_500_naming_the_plugin(faulty_gateway):
    sdk = client(faulty_gateway)
    error = expect_error(lambda: sdk.chat.completions.create(model="fault/loop", messages=MESSAGES),
                         openai.InternalServerError, 500, "plugin_deadline:faulty-router")
    assert "faulty-router" in error.body["message"]
    expect_error(lambda: sdk.chat.completions.create(model="fault/panic", messages=MESSAGES),
                 openai.InternalServerError, 500, "plugin_trap:faulty-router")
    expect_error(lambda: sdk.chat.completions.create(model="fault/bad-index", messages=MESSAGES),
                 openai.InternalServerError, 500, "plugin_bad_output:faulty-router")
    # The next request through the same plugin is served.
    answer = sdk.chat.completions.create(model="demo", messages=MESSAGES)
    assert answer.choices[0].message.content == EXPECTED


def test_the_router_reads_the_request_the_gateway_lends_it(faulty_gateway):
    # `fault/request` makes the faulty router refuse with every field of the
    # request it was lent, read through the contract's `request` resource.
    sdk = client(faulty_gateway)
    for stream in (False, True):
        error = expect_error(
            lambda: sdk.chat.completions.create(
                model="fault/request", messages=MESSAGES, max_tokens=7, stream=stream),
            openai.BadRequestError, 400, "request")
        fields = dict(part.split("=", 1) for part in
                      error.body["message"].removeprefix("plugin faulty-router: ").split(" "))
        assert fields["model"] == "fault/request"
        assert fields["stream"] == str(stream).lower()
        assert fields["max"] == "Some(7)"
        assert int(fields["prompt"]) > 0
        assert fields["protocol"] == "openai-chat"
        assert fields["caller"].startswith("e2e/tester/default/")
        assert abs(int(fields["at"]) - time.time() * 1000) < 60_000
        assert fields["candidates"] == "1/0/None"
        assert fields["channels"] == "demo-channel/openai-chat/,none"


def test_an_upstream_dying_mid_stream_ends_the_stream_with_an_error(gateway):
    stream = client(gateway).chat.completions.create(model="demo/drop-4", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) >= 2, "the chunks before the drop arrive"
    assert caught.value.body["code"] == "upstream_disconnected"


def test_an_upstream_stalling_mid_stream_times_out(gateway):
    stream = client(gateway).chat.completions.create(model="demo/stall-3000", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert caught.value.body["code"] == "upstream_timeout"


def wait_for(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_client_disconnect_cancels_the_upstream_and_the_next_call_works(gateway, demo_stats):
    before = demo_stats()
    stream = client(gateway).chat.completions.create(
        model="demo/stall-100/words-200", messages=MESSAGES, stream=True)
    for index, _ in enumerate(stream):
        if index == 2:
            break
    stream.close()
    assert wait_for(lambda: demo_stats()["streams_cancelled"] > before["streams_cancelled"]), demo_stats()
    answer = client(gateway).chat.completions.create(model="demo", messages=MESSAGES)
    assert answer.choices[0].message.content == EXPECTED


def test_a_slow_client_holds_back_the_upstream(gateway, demo_stats):
    """Backpressure: while the client reads nothing, the upstream cannot
    finish a stream far larger than the socket buffers between them."""
    before = demo_stats()
    headers = {"authorization": f"Bearer {KEY}"}
    body = {"model": "demo/words-150000", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        pieces = response.iter_bytes()
        next(pieces)
        assert wait_for(lambda: demo_stats()["streams_started"] > before["streams_started"])
        # The client pauses; a relay that buffered without bound would let
        # the upstream complete now.
        time.sleep(1.0)
        assert demo_stats()["streams_completed"] == before["streams_completed"]
        total = sum(len(piece) for piece in pieces)
    assert total > 20_000_000
    assert wait_for(lambda: demo_stats()["streams_completed"] > before["streams_completed"])


def test_channel_credentials_reach_the_upstream_but_never_a_log(gateway, demo_stats):
    before = demo_stats()["requests_with_credentials"]
    sdk = client(gateway)
    sdk.chat.completions.create(model="demo", messages=MESSAGES)
    for failing in ["demo/status-401", "demo/status-500"]:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model=failing, messages=MESSAGES)
        assert UPSTREAM_SECRET not in str(caught.value.body)
    assert demo_stats()["requests_with_credentials"] >= before + 3
    # Log lines are written by a background thread: wait for the last call's.
    assert wait_for(lambda: "demo/status-500" in pathlib.Path(gateway.log.name).read_text())
    log = pathlib.Path(gateway.log.name).read_text()
    assert "request_id" in log
    assert UPSTREAM_SECRET not in log and KEY not in log


def test_json_logs_have_one_access_line_per_request(faulty_gateway):
    headers = {"x-request-id": "json-log-check-1"}
    client(faulty_gateway).chat.completions.create(model="demo", messages=MESSAGES, extra_headers=headers)

    def access_lines():
        complete = pathlib.Path(faulty_gateway.log.name).read_text().rpartition("\n")[0]
        lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [l for l in lines if l.get("fields", {}).get("request_id") == "json-log-check-1"]

    assert wait_for(access_lines)
    access = access_lines()
    assert len(access) == 1, access
    fields = access[0]["fields"]
    assert fields["model"] == "demo" and fields["status"] == 200 and fields["outcome"] == "complete"
    assert fields["channel"] == "demo-channel" and fields["completion_tokens"] == len(EXPECTED.split())
    assert fields["ttfb_ms"] > 0 and fields["latency_ms"] >= fields["ttfb_ms"]


def test_a_channel_that_is_down_fails_over_to_the_next(failover_gateway):
    sdk = client(failover_gateway)
    assert sdk.chat.completions.create(model="demo", messages=MESSAGES).choices[0].message.content == EXPECTED
    text = "".join(c.choices[0].delta.content or "" for c in
                   sdk.chat.completions.create(model="demo", messages=MESSAGES, stream=True) if c.choices)
    assert text == EXPECTED
    assert wait_for(lambda: "trying the next" in pathlib.Path(failover_gateway.log.name).read_text())
    assert "dead-channel" in pathlib.Path(failover_gateway.log.name).read_text()
