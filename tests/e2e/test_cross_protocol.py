"""Every client protocol against every channel protocol: the official
`anthropic` and `openai` SDKs through Sluice to OpenAI, Anthropic and Gemini
channels (all served by the demo upstream), stream and non-stream, text and
tool use, with the usage each side sees checked against what the upstream
reported."""

import json
import pathlib
import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import KEY
from test_openai_sdk import EXPECTED, TOOLS, wait_for

SYSTEM = "Be brief."
QUESTION = "Ping ☕"
ARGUMENTS = {"location": "Paris", "unit": "celsius", "note": "café ☕ 😀"}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}

# One model per channel protocol; the demo reads fault and usage directives
# after the name (`.`-separated for Gemini, whose model names go in the path).
CHANNELS = {"openai": "demo", "anthropic": "claude-demo", "gemini": "gemini-demo"}


def directive(channel, *parts):
    separator = "." if channel == "gemini" else "/"
    return separator.join([CHANNELS[channel], *parts])


def claude(gateway, key=KEY):
    return anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0, timeout=20)


def gpt(gateway, key=KEY):
    return openai.OpenAI(api_key=key, base_url=f"{gateway.url}/v1", max_retries=0, timeout=20)


def reported(demo, request_id):
    """The usage the demo upstream reported for a request, in Sluice's neutral meaning."""
    return httpx.get(f"{demo.url}/demo/usage/{request_id}").json()


def access_line(gateway, request_id):
    def find():
        complete = pathlib.Path(gateway.log.name).read_text().rpartition("\n")[0]
        lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [l["fields"] for l in lines
                if l.get("target") == "sluice::access" and l["fields"].get("request_id") == request_id]

    assert wait_for(find), f"no access line for {request_id}"
    (line,) = find()
    return line


def assert_billed_as_reported(line, tokens):
    billed = {k: line[k] for k in
              ["prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"]}
    assert billed == tokens
    assert line["usage_reported"] is True


@pytest.mark.parametrize("channel", CHANNELS)
def test_anthropic_sdk_non_stream_text(gateway, channel):
    message = claude(gateway).messages.create(
        model=CHANNELS[channel], max_tokens=1024, system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}])
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == EXPECTED
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens >= len(EXPECTED.split())


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("chunking", ["", "chunk-1", "chunk-7"])
def test_anthropic_sdk_stream_text(gateway, channel, chunking):
    model = directive(channel, chunking) if chunking else CHANNELS[channel]
    with claude(gateway).messages.stream(
            model=model, max_tokens=1024, system=SYSTEM,
            messages=[{"role": "user", "content": QUESTION}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == EXPECTED
    assert final.content[0].text == EXPECTED
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens >= len(EXPECTED.split())


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_use(gateway, channel, stream):
    request = dict(model=CHANNELS[channel], max_tokens=1024, tools=[WEATHER_TOOL],
                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    if stream:
        with claude(gateway).messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = claude(gateway).messages.create(**request)
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert len(tool_uses) == 1
    assert tool_uses[0].name == "get_weather"
    assert tool_uses[0].input == ARGUMENTS
    assert all(c.isalnum() or c in "_-" for c in tool_uses[0].id)
    assert message.stop_reason == "tool_use"

    # The tool's result goes back in the next turn and the call completes.
    follow_up = claude(gateway).messages.create(
        model=CHANNELS[channel], max_tokens=1024, tools=[WEATHER_TOOL], tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": message.content},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": tool_uses[0].id, "content": "18°C"},
                      {"type": "text", "text": QUESTION}]}])
    assert follow_up.content[0].text == EXPECTED


@pytest.mark.parametrize("channel", ["anthropic", "gemini"])
@pytest.mark.parametrize("chunking", ["", "chunk-1"])
def test_openai_sdk_stream_to_other_providers(gateway, channel, chunking):
    model = directive(channel, chunking) if chunking else CHANNELS[channel]
    chunks = list(gpt(gateway).chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= len(EXPECTED.split())


@pytest.mark.parametrize("channel", ["anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_calls_from_other_providers(gateway, channel, stream):
    request = dict(model=CHANNELS[channel], tools=TOOLS,
                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    if stream:
        calls = {}
        finish = None
        for chunk in gpt(gateway).chat.completions.create(stream=True, **request):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    call["id"] = delta.id or call["id"]
                    if delta.function:
                        call["name"] = delta.function.name or call["name"]
                        call["arguments"] += delta.function.arguments or ""
        assert list(calls) == [0]
        call = calls[0]
    else:
        completion = gpt(gateway).chat.completions.create(**request)
        finish = completion.choices[0].finish_reason
        (tool_call,) = completion.choices[0].message.tool_calls
        call = {"id": tool_call.id, "name": tool_call.function.name, "arguments": tool_call.function.arguments}
    assert finish == "tool_calls"
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == ARGUMENTS

    # The result goes back; the provider needs the call's name and id restored.
    follow_up = gpt(gateway).chat.completions.create(
        model=CHANNELS[channel], tools=TOOLS, tool_choice="none",
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": call["id"], "type": "function",
                       "function": {"name": call["name"], "arguments": call["arguments"]}}]},
                  {"role": "tool", "tool_call_id": call["id"], "content": "18°C"},
                  {"role": "user", "content": QUESTION}])
    assert follow_up.choices[0].message.content == EXPECTED


# Usage: every combination, with cache reads, cache writes and reasoning
# where the upstream's protocol can report them. The client sees the
# upstream's numbers in its own protocol's terms; billing records them all.
USAGE_DIRECTIVES = {"openai": ["cached-4", "reasoning-3"],
                    "anthropic": ["cached-4", "cache-write-2"],
                    "gemini": ["cached-4", "reasoning-3"]}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("stream", [False, True])
def test_usage_to_an_openai_client_and_to_billing_is_the_upstreams(json_gateway, demo, channel, stream):
    request_id = f"usage-openai-{channel}-{stream}-{uuid.uuid4().hex[:8]}"
    request = dict(model=directive(channel, *USAGE_DIRECTIVES[channel]),
                   messages=[{"role": "user", "content": QUESTION}],
                   extra_headers={"x-request-id": request_id})
    if stream:
        chunks = list(gpt(json_gateway).chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **request))
        usage = chunks[-1].usage
    else:
        usage = gpt(json_gateway).chat.completions.create(**request).usage
    tokens = reported(demo, request_id)
    assert usage.prompt_tokens == tokens["prompt_tokens"]
    assert usage.completion_tokens == tokens["completion_tokens"]
    assert usage.total_tokens == tokens["prompt_tokens"] + tokens["completion_tokens"]
    assert usage.prompt_tokens_details.cached_tokens == tokens["cached_tokens"]
    if tokens["reasoning_tokens"]:
        assert usage.completion_tokens_details.reasoning_tokens == tokens["reasoning_tokens"]
    assert_billed_as_reported(access_line(json_gateway, request_id), tokens)


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("stream", [False, True])
def test_usage_to_an_anthropic_client_and_to_billing_is_the_upstreams(json_gateway, demo, channel, stream):
    request_id = f"usage-anthropic-{channel}-{stream}-{uuid.uuid4().hex[:8]}"
    request = dict(model=directive(channel, *USAGE_DIRECTIVES[channel]), max_tokens=1024,
                   messages=[{"role": "user", "content": QUESTION}],
                   extra_headers={"x-request-id": request_id})
    if stream:
        with claude(json_gateway).messages.stream(**request) as events:
            usage = events.get_final_message().usage
    else:
        usage = claude(json_gateway).messages.create(**request).usage
    tokens = reported(demo, request_id)
    assert usage.input_tokens == tokens["prompt_tokens"] - tokens["cached_tokens"] - tokens["cache_write_tokens"]
    assert usage.cache_read_input_tokens == tokens["cached_tokens"]
    assert (usage.cache_creation_input_tokens or 0) == tokens["cache_write_tokens"]
    assert usage.output_tokens == tokens["completion_tokens"]
    assert_billed_as_reported(access_line(json_gateway, request_id), tokens)


def test_anthropic_errors_have_anthropics_shape_and_classes(gateway):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude(gateway, key="sk-not-a-key-at-all").messages.create(
            model="claude-demo", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(gateway).messages.create(model="no-such-model", max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "not_found_error"

    with pytest.raises(anthropic.RateLimitError):
        claude(gateway).messages.create(model=directive("gemini", "status-429"), max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])

    # An overloaded Anthropic channel, with no other channel to try.
    with pytest.raises(anthropic.OverloadedError) as caught:
        claude(gateway).messages.create(model=directive("anthropic", "status-529"), max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "overloaded_error"

    # An upstream's refusal of the request itself passes through unchanged.
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(gateway).messages.create(model=directive("anthropic", "status-400"), max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    assert "asked to fail with 400" in caught.value.body["error"]["message"]


def test_malformed_messages_requests_get_anthropic_400s(gateway):
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    missing_max_tokens = httpx.post(f"{gateway.url}/v1/messages", headers=headers,
                                    json={"model": "claude-demo", "messages": [{"role": "user", "content": "x"}]})
    assert missing_max_tokens.status_code == 400
    body = missing_max_tokens.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]

    not_json = httpx.post(f"{gateway.url}/v1/messages", headers=headers, content=b"{not json")
    assert not_json.status_code == 400 and not_json.json()["type"] == "error"


@pytest.mark.parametrize("channel", ["openai", "gemini"])
def test_an_anthropic_stream_cut_mid_way_raises_in_the_sdk(gateway, channel):
    with pytest.raises(anthropic.APIStatusError):
        with claude(gateway).messages.stream(
                model=directive(channel, "drop-3"), max_tokens=1024,
                messages=[{"role": "user", "content": QUESTION}]) as stream:
            for _ in stream.text_stream:
                pass


def test_anthropic_passthrough_stream_cut_mid_way_raises_in_the_sdk(gateway):
    with pytest.raises(anthropic.APIStatusError):
        with claude(gateway).messages.stream(
                model=directive("anthropic", "drop-4"), max_tokens=1024,
                messages=[{"role": "user", "content": QUESTION}]) as stream:
            for _ in stream.text_stream:
                pass


def test_count_tokens(gateway):
    short = claude(gateway).messages.count_tokens(
        model="claude-demo", messages=[{"role": "user", "content": "Hello"}])
    longer = claude(gateway).messages.count_tokens(
        model="claude-demo", system="You are a weather assistant.", tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Hello, what is the weather like in Paris today?"}])
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude(gateway).messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("channel", ["anthropic", "gemini"])
def test_an_openai_stream_from_another_provider_cut_mid_way_raises_in_the_sdk(gateway, channel):
    with pytest.raises(openai.APIError):
        for _ in gpt(gateway).chat.completions.create(
                model=directive(channel, "drop-3"), stream=True,
                messages=[{"role": "user", "content": QUESTION}]):
            pass


def test_anthropic_sdk_lists_the_models_its_key_may_use(gateway):
    ids = [model.id for model in claude(gateway).models.list()]
    assert {"demo", "claude-demo", "gemini-demo"} <= set(ids)
    assert [m.id for m in gpt(gateway).models.list()] == ids
