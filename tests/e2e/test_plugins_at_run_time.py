"""Plugins at run time: the plugin folder is watched (a bundle moved in
replaces the chain's plugin of its name without a restart, a broken bundle
is refused with one log line while the previous chain keeps serving, and
removing the bundle brings the built-in back), and every plugin version's
calls, faults and durations are counted for the admin API and Prometheus."""

import json
import pathlib
import re
import shutil
import tempfile
import time

import httpx
import openai
import pytest

from conftest import KEY, Admin, gateway_config, start_gateway

MESSAGES = [{"role": "user", "content": "Hello"}]


def wait_for(condition, what, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def routed_by_the_faulty_router(client):
    """`fault/bad-index` makes the faulty router answer out of range; the
    built-in router does not look at the model."""
    try:
        client.chat.completions.create(model="fault/bad-index", messages=MESSAGES)
        return False
    except openai.InternalServerError as error:
        assert error.body["code"] == "plugin_bad_output:router"
        return True


def log_lines(process):
    lines = pathlib.Path(process.log.name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_plugin_folder_is_watched_and_bad_bundles_are_refused(built, demo):
    executable, bundles = built
    folder = pathlib.Path(tempfile.mkdtemp(prefix="sluice-plugins-"))
    process = start_gateway(executable, gateway_config(demo.url, f'[plugins]\ndir = "{folder}"\n'),
                            log_format="json")
    try:
        client = openai.OpenAI(api_key=KEY, base_url=f"{process.url}/v1", max_retries=0, timeout=20)
        assert not routed_by_the_faulty_router(client)

        # Staged beside the folder, then moved in whole, as an operator would.
        staged = pathlib.Path(tempfile.mkdtemp(prefix="sluice-staged-")) / "router"
        shutil.copytree(bundles / "faulty-router", staged)
        manifest = staged / "plugin.toml"
        manifest.write_text(manifest.read_text().replace('name = "faulty-router"', 'name = "router"'))
        shutil.move(staged, folder / "router")
        wait_for(lambda: routed_by_the_faulty_router(client), "the new router to serve")
        assert client.chat.completions.create(model="demo", messages=MESSAGES).choices

        (folder / "router" / "plugin.wasm").write_bytes(b"\0asm not really")
        wait_for(lambda: any("plugin bundle refused" in str(line.get("fields", {}).get("message"))
                             and "router" in str(line["fields"].get("reason"))
                             for line in log_lines(process)), "the refusal in the log")
        assert routed_by_the_faulty_router(client), "the previous chain keeps serving"

        shutil.rmtree(folder / "router")
        wait_for(lambda: not routed_by_the_faulty_router(client), "the built-in router to return")
    finally:
        process.stop()


def test_plugin_figures_count_calls_and_faults_per_version(faulty_gateway):
    client = openai.OpenAI(api_key=KEY, base_url=f"{faulty_gateway.url}/v1", max_retries=0, timeout=20)
    admin = Admin(faulty_gateway.url)

    def figures():
        return {r["plugin"]: r for r in admin.get("/plugins/metrics")}

    before = figures()["faulty-router"]
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fault/loop", messages=MESSAGES)
    assert client.chat.completions.create(model="demo", messages=MESSAGES).choices
    after = figures()["faulty-router"]
    assert after["calls"] >= before["calls"] + 2
    assert after["failures"]["plugin_deadline"] == before["failures"]["plugin_deadline"] + 1
    assert after["p99_ms"] is not None and after["content_hash"]

    text = httpx.get(f"{faulty_gateway.url}/metrics", timeout=10).text
    deadline = re.search(
        r'^sluice_plugin_failures_total\{plugin="faulty-router",[^}]*failure="plugin_deadline"\} (\d+)$',
        text, re.M)
    assert deadline and int(deadline.group(1)) == after["failures"]["plugin_deadline"]
    assert re.search(r'^sluice_plugin_call_duration_seconds_bucket\{plugin="pricing",.*le="\+Inf"\} \d+$', text, re.M)
