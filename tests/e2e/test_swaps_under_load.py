"""Zero-downtime swaps: under steady load, the router, the pricing and a
translator are swapped every second for 30 s. No request fails; streams in
flight finish whole across swaps of the translator they run through; and
every charge is priced by the pricing version that was active when its
request was admitted, which the call log names."""

import base64
import threading
import time

import anthropic
import openai

from conftest import KEY, Admin, gateway_config, start_gateway

SWAP_SECONDS = 30
MESSAGES = [{"role": "user", "content": "Hello"}]
# One pricing component, two configurations: full price and half price.
PRICINGS = {"full": 0, "half": 50}
SLOW_STREAM = "claude-demo/stall-40/words-30"


def upload_body(folder, name, version, config=None):
    lines = []
    for line in (folder / "plugin.toml").read_text().splitlines():
        key = line.split("=")[0].strip()
        if key in ("[config]", "[[tests]]"):
            break
        lines.append({"name": f'name = "{name}"', "version": f'version = "{version}"'}.get(key, line))
    component = base64.b64encode((folder / "plugin.wasm").read_bytes()).decode()
    return {"manifest": "\n".join(lines) + "\n" + (config or ""), "component": component}


class Swapper(threading.Thread):
    """Swaps router, pricing and the anthropic translator every second,
    recording when each pricing activation was sent and answered."""

    def __init__(self, admin, seconds):
        super().__init__(daemon=True)
        self.admin, self.seconds = admin, seconds
        self.pricing_windows = []  # (sent, answered, version now active)
        self.swaps = 0

    def run(self):
        deadline = time.monotonic() + self.seconds
        turn = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            turn += 1
            ab = "b" if turn % 2 else "a"
            self.admin.send("POST", "/plugins/router/activate", {"version": f"swap-{ab}"})
            self.admin.send("POST", "/plugins/anthropic/activate", {"version": f"swap-{ab}"})
            pricing = "half" if turn % 2 else "full"
            sent = time.monotonic()
            self.admin.send("POST", "/plugins/pricing/activate", {"version": pricing})
            self.pricing_windows.append((sent, time.monotonic(), pricing))
            self.swaps += 3
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def settled_calls(admin, request_ids, wait=30.0):
    """The call log rows of `request_ids`, once every one is settled."""
    deadline = time.monotonic() + wait
    while True:
        rows, page = {}, 1
        while True:
            data = admin.get("/calls", page=page, page_size=1000)["data"]
            rows.update((row["request_id"], row) for row in data)
            if len(data) < 1000:
                break
            page += 1
        if request_ids <= rows.keys() or time.monotonic() > deadline:
            assert request_ids <= rows.keys(), f"{len(request_ids - rows.keys())} calls never settled"
            return rows
        time.sleep(0.2)


def test_swaps_every_second_under_load_lose_nothing(built, demo):
    executable, bundles = built
    process = start_gateway(executable, gateway_config(demo.url))
    try:
        admin = Admin(process.url)
        for version in ("swap-a", "swap-b"):
            admin.send("POST", "/plugins", upload_body(bundles / "router", "router", version))
            admin.send("POST", "/plugins", upload_body(bundles / "anthropic", "anthropic", version))
        for version, discount in PRICINGS.items():
            config = f"\n[config]\nstart_hour = 0\nend_hour = 24\ndiscount_percent = {discount}\n"
            admin.send("POST", "/plugins", upload_body(bundles / "offpeak-pricing", "pricing", version, config))
        admin.send("POST", "/plugins/pricing/activate", {"version": "full"})
        steady_from = time.monotonic()

        oai = openai.OpenAI(api_key=KEY, base_url=f"{process.url}/v1", max_retries=0, timeout=30)
        ant = anthropic.Anthropic(api_key=KEY, base_url=process.url, max_retries=0, timeout=30)
        results, failures, lock = [], [], threading.Lock()
        stop = threading.Event()

        def record(kind, call):
            while not stop.is_set():
                started = time.monotonic()
                try:
                    request_id, first_byte = call()
                    with lock:
                        results.append((kind, request_id, started, first_byte, time.monotonic()))
                except Exception as error:  # every failure is reported below
                    with lock:
                        failures.append((kind, repr(error)))

        def plain():
            raw = oai.chat.completions.with_raw_response.create(model="demo", messages=MESSAGES, max_tokens=32)
            assert raw.parse().choices[0].finish_reason == "stop"
            return raw.headers["x-request-id"], time.monotonic()

        def translated_stream():
            """OpenAI client, Anthropic channel: the translator runs per chunk."""
            with oai.chat.completions.with_streaming_response.create(
                    model=SLOW_STREAM, messages=MESSAGES, stream=True) as response:
                first_byte, text, finish = None, [], None
                for chunk in response.parse():
                    first_byte = first_byte or time.monotonic()
                    for choice in chunk.choices:
                        text.append(choice.delta.content or "")
                        finish = choice.finish_reason or finish
                assert finish == "stop" and len("".join(text).split()) == 30
                return response.headers["x-request-id"], first_byte

        def passthrough_stream():
            """Anthropic client and channel: the translator observes usage."""
            with ant.messages.with_streaming_response.create(
                    model=SLOW_STREAM, max_tokens=256, messages=MESSAGES, stream=True) as response:
                first_byte, kinds = None, []
                for event in response.parse():
                    first_byte = first_byte or time.monotonic()
                    kinds.append(event.type)
                assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
                return response.headers["x-request-id"], first_byte

        workers = [threading.Thread(target=record, args=(kind, call), daemon=True)
                   for kind, call in [("plain", plain)] * 4 + [("translated", translated_stream)] * 2
                   + [("passthrough", passthrough_stream)] * 2]
        for worker in workers:
            worker.start()
        swapper = Swapper(admin, SWAP_SECONDS)
        swapper.start()
        swapper.join()
        stop.set()
        for worker in workers:
            worker.join(60)

        assert failures == [], f"{len(failures)} requests failed during swaps: {failures[:5]}"
        assert swapper.swaps >= 3 * (SWAP_SECONDS - 2)
        by_kind = {kind: sum(1 for r in results if r[0] == kind) for kind in ("plain", "translated", "passthrough")}
        assert all(count >= 10 for count in by_kind.values()), by_kind

        rows = settled_calls(admin, {r[1] for r in results})
        windows = [(steady_from, steady_from, "full")] + swapper.pricing_windows
        spanning = 0
        for kind, request_id, started, first_byte, ended in results:
            row = rows[request_id]
            assert row["ending"] == "complete", (kind, row)
            version = row["pricing_plugin"].split("#")[0].split("@")[1]
            full = row["prompt_tokens"] + 2 * row["completion_tokens"]
            assert row["priced"] == (full if version == "full" else -(-full // 2)), row
            # Admission falls between the request's start and its first byte:
            # where no activation overlapped that span, the version is known.
            if any(sent <= first_byte and started <= answered for sent, answered, _ in windows[1:]):
                continue
            active = [v for sent, answered, v in windows if answered < started][-1]
            assert version == active, (request_id, version, active)
            if any(first_byte < sent and answered < ended for sent, answered, _ in windows[1:]):
                spanning += 1
        assert spanning >= 5, "streams that outlived a pricing swap kept their admission's version"
    finally:
        process.stop()
