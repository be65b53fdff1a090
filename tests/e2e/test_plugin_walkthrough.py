"""docs/plugins.md, run as written: every `sh` block of its walk, in order,
in one shell, from scaffolding a tenant pricing plugin to activating it;
then a call of the tenant's is priced by it."""

import json
import os
import pathlib
import re
import subprocess
import tempfile

import openai

from conftest import ADMIN_TOKEN, ROOT, Admin, gateway_config, start_gateway

MESSAGES = [{"role": "user", "content": "Hello"}]


def walk_script():
    text = (ROOT / "docs" / "plugins.md").read_text()
    walk = text.split("## From nothing to an active tenant pricing plugin")[1].split("\n## ")[0]
    blocks = re.findall(r"```sh\n(.*?)```", walk, re.S)
    assert len(blocks) >= 6, "the walk's steps are sh blocks"
    return "\n".join(blocks)


def test_the_plugin_walkthrough_runs_as_written(built, demo):
    executable, _ = built
    process = start_gateway(executable, gateway_config(demo.url))
    try:
        admin = Admin(process.url)
        # Acme's users have made calls before: the dry run replays them.
        _, key = admin.new_key(10_000_000, tenant="acme")
        client = openai.OpenAI(api_key=key["key"], base_url=f"{process.url}/v1", max_retries=0, timeout=30)
        for _ in range(5):
            client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=32)

        workdir = tempfile.mkdtemp(prefix="sluice-walk-")
        env = {**os.environ, "SLUICE_URL": process.url, "SLUICE_ADMIN_TOKEN": ADMIN_TOKEN,
               "PATH": f"{pathlib.Path(executable).parent}{os.pathsep}{os.environ['PATH']}"}
        walk = subprocess.run(["bash", "-euo", "pipefail", "-c", walk_script()], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert walk.returncode == 0, f"the walk failed:\n{walk.stdout[-3000:]}\n{walk.stderr[-3000:]}"
        assert "1 self-tests: 1 passed, 0 failed" in walk.stdout

        # curl prints each answer without a newline: the dry run's report
        # is the JSON object that starts with its "plugin".
        start = walk.stdout.index('{"plugin"')
        report, _ = json.JSONDecoder().raw_decode(walk.stdout[start:])
        pricing = report["pricing"]
        assert report["clean"] and pricing["charged_calls"] == 5 and pricing["charges_changed"] == 5
        assert pricing["difference"] > 0, "a markup charges more"

        raw = client.chat.completions.with_raw_response.create(model="demo", messages=MESSAGES, max_tokens=32)
        row = admin.call(raw.headers["x-request-id"])
        assert row["pricing_plugin"].startswith("acme-markup@0.1.0#")
        assert row["priced"] == -(-row["operator_priced"] * 110 // 100)
    finally:
        process.stop()
