"""The plugin folder is watched: a bundle copied in replaces the chain's
plugin of its name without a restart, a broken bundle is refused with one
log line while the previous chain keeps serving, and removing the bundle
brings the built-in back."""

import json
import pathlib
import shutil
import tempfile
import time

import openai
import pytest

from conftest import KEY, gateway_config, start_gateway

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
