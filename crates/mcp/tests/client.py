"""Drives roost's MCP server with the official Python MCP client.

Run by crates/roost/tests/mcp.rs against a real `roost up`; each scenario
exits non-zero with a message on the first unexpected answer.

    client.py http    URL TOKEN APP IMAGE MODE      full lifecycle over Streamable HTTP
    client.py stdio   ROOST_BIN URL TOKEN APP IMAGE  the same tools through `roost mcp`
    client.py bad     URL TOKEN APP IMAGE HOST_FILE  bad tool input gives tool errors
    client.py bench   URL TOKEN APP IMAGE ROUNDS     MCP vs plain HTTP API round trips
    client.py pull    URL TOKEN APP REGISTRY_IMAGE   pull_image, then run the pulled image
    client.py volumes URL TOKEN APP IMAGE           volume tools, a machine mounting a volume
    client.py secrets URL TOKEN APP IMAGE           secret tools; values never come back
    client.py egress  URL TOKEN APP IMAGE           egress tools; machines get the proxy
    client.py scoped  URL TOKEN APP MACHINE_ID      a read-only token: only reading tools, refusals

MODE is "legacy" (initialize handshake, Mcp-Session-Id sessions) or
"2026-07-28" (stateless requests).
"""

import asyncio
import base64
import json
import os
import statistics
import sys
import time

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

EXPECTED_TOOLS = {
    "list_apps", "create_app", "list_images", "pull_image", "run_machine", "list_machines",
    "get_machine", "start_machine", "stop_machine", "restart_machine", "destroy_machine",
    "wait_machine", "exec", "tail_logs", "read_file", "write_file", "list_dir",
    "create_storage", "list_storage", "destroy_storage",
    "list_volumes", "create_volume", "get_volume", "extend_volume", "destroy_volume",
    "list_volume_snapshots", "create_volume_snapshot",
    "list_secrets", "set_secrets", "unset_secrets",
    "get_egress", "set_egress", "get_egress_log",
}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def http_client(url, token, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, cache=None)


async def call_ok(client, tool, arguments):
    """Calls a tool that must succeed; returns the whole result."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        fail(f"{tool}({arguments}) failed: {result.content[0].text}")
    if not isinstance(result.structured_content, dict):
        fail(f"{tool} returned no structured content: {result}")
    summary = result.content[0].text.splitlines()[0]
    print(f"{tool}: {summary}")
    return result


async def ok(client, tool, **arguments):
    """Calls a tool that must succeed; returns its structured content."""
    return (await call_ok(client, tool, arguments)).structured_content


async def tool_error(client, tool, arguments, *needles):
    """Calls a tool that must fail with a tool error mentioning every needle."""
    result = await client.call_tool(tool, arguments)
    text = " ".join(c.text for c in result.content if hasattr(c, "text"))
    if not result.is_error:
        fail(f"{tool}({arguments}) should have failed, got: {text}")
    for needle in needles:
        if needle.lower() not in text.lower():
            fail(f"{tool}({arguments}) error lacks {needle!r}: {text}")
    print(f"{tool} refused as expected: {text}")
    return text


async def sh(client, app, mid, script):
    """Runs a shell script in a machine; returns its stdout, failing on a non-zero exit."""
    out = await ok(client, "exec", app=app, machine_id=mid, command=["sh", "-c", script])
    if out["exit_code"] != 0:
        fail(f"{script!r} exited {out['exit_code']}: {out}")
    return out["stdout"]


async def lifecycle(client, app, image, full):
    tools = {t.name for t in (await client.list_tools()).tools}
    if tools != EXPECTED_TOOLS:
        fail(f"tools differ: missing {EXPECTED_TOOLS - tools}, unexpected {tools - EXPECTED_TOOLS}")
    machine = await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"])
    mid = machine["id"]
    if machine["state"] != "started":
        fail(f"run_machine left the machine {machine['state']}")
    out = await ok(client, "exec", app=app, machine_id=mid,
                   command=["sh", "-c", "echo out; echo err >&2; exit 3"])
    if (out["exit_code"], out["stdout"], out["stderr"]) != (3, "out\n", "err\n"):
        fail(f"exec returned {out}")
    await ok(client, "write_file", app=app, machine_id=mid, path="/root/work/note.txt",
             content="persisted across stop and start\n", mode="600")
    stopped = await ok(client, "stop_machine", app=app, machine_id=mid)
    if stopped["state"] != "stopped":
        fail(f"stop_machine left the machine {stopped['state']}")
    if full:
        await tool_error(client, "exec", {"app": app, "machine_id": mid, "command": ["true"]},
                         "stopped", "start_machine")
        # Files of a stopped machine are reachable through its rootfs.
        await ok(client, "write_file", app=app, machine_id=mid, path="/root/work/bin/run.sh",
                 content=base64.b64encode(b"#!/bin/sh\necho ran while stopped\n").decode(),
                 encoding="base64", mode="755")
        listing = await ok(client, "list_dir", app=app, machine_id=mid, path="/root/work")
        names = {e["name"]: e for e in listing["entries"]}
        if names.get("note.txt", {}).get("mode") != "600" or names.get("bin", {}).get("kind") != "dir":
            fail(f"list_dir of a stopped machine: {listing}")
        read = await ok(client, "read_file", app=app, machine_id=mid, path="/root/work/note.txt")
        if read["content"] != "persisted across stop and start\n":
            fail(f"read_file of a stopped machine: {read}")
    started = await ok(client, "start_machine", app=app, machine_id=mid)
    if started["state"] != "started":
        fail(f"start_machine left the machine {started['state']}")
    read = await ok(client, "read_file", app=app, machine_id=mid, path="/root/work/note.txt")
    if (read["content"], read["eof"], read["size"]) != ("persisted across stop and start\n", True, 32):
        fail(f"read_file after restart: {read}")
    if full:
        part = await ok(client, "read_file", app=app, machine_id=mid, path="/root/work/note.txt",
                        offset=10, limit=6)
        if (part["content"], part["next_offset"], part["eof"]) != ("across", 16, False):
            fail(f"read_file with offset and limit: {part}")
        ran = await ok(client, "exec", app=app, machine_id=mid,
                       command=["sh", "-c", "/root/work/bin/run.sh; stat -c %a /root/work/note.txt"])
        if ran["stdout"] != "ran while stopped\n600\n":
            fail(f"a file written while stopped did not persist: {ran}")
        await ok(client, "tail_logs", app=app, machine_id=mid, lines=10)
        listed = await ok(client, "list_machines", app=app)
        if mid not in {m["id"] for m in listed["machines"]}:
            fail(f"list_machines lacks {mid}: {listed}")
        waited = await ok(client, "wait_machine", app=app, machine_id=mid, state="started",
                          timeout_seconds=5)
        if waited["state"] != "started":
            fail(f"wait_machine: {waited}")
    await ok(client, "destroy_machine", app=app, machine_id=mid, force=True)
    gone = await ok(client, "get_machine", app=app, machine_id=mid)
    if gone["state"] != "destroyed":
        fail(f"machine not destroyed: {gone}")


async def scenario_http(url, token, app, image, mode):
    async with http_client(url, token, mode) as client:
        await lifecycle(client, app, image, full=True)


async def scenario_stdio(roost, url, token, app, image):
    params = StdioServerParameters(
        command=roost, args=["mcp"],
        env={"ROOST_API_URL": url, "ROOST_API_TOKEN": token, "PATH": os.environ["PATH"]},
    )
    async with Client(params, mode="legacy", cache=None) as client:
        await lifecycle(client, app, image, full=False)


async def scenario_pull(url, token, app, image):
    """pull_image from a registry, then a machine runs the pulled image."""
    async with http_client(url, token, "legacy") as client:
        pulled = await ok(client, "pull_image", image=image)
        if pulled["reference"] != image:
            fail(f"pull_image returned {pulled}")
        await tool_error(client, "pull_image", {"image": image.rsplit(":", 1)[0] + ":no-such-tag"}, "no-such-tag")
        machine = await ok(client, "run_machine", app=app, image=image, command=["sleep", "1000"])
        out = await ok(client, "exec", app=app, machine_id=machine["id"], command=["cat", "/etc/hostname-source"])
        if out["stdout"] != "pulled\n":
            fail(f"exec in the pulled image gave {out}")
        await ok(client, "destroy_machine", app=app, machine_id=machine["id"], force=True)
        bucket = await ok(client, "create_storage", app=app, name="mcp-bucket")
        if (bucket["name"], bucket["app"]) != ("mcp-bucket", app) or not bucket.get("secret_access_key"):
            fail(f"create_storage returned {bucket}")
        await tool_error(client, "create_storage", {"app": app, "name": "mcp-bucket"},
                         "mcp-bucket", "list_storage")
        listed = await ok(client, "list_storage", app=app)
        if [b["name"] for b in listed["buckets"]] != ["mcp-bucket"] or "secret_access_key" in listed["buckets"][0]:
            fail(f"list_storage returned {listed}")
        await ok(client, "destroy_storage", app=app, name="mcp-bucket")
        if (await ok(client, "list_storage", app=app))["buckets"]:
            fail("destroy_storage left the bucket listed")


async def scenario_volumes(url, token, app, image):
    """A volume's life through MCP: mounted by a machine, written, snapshotted,
    grown while mounted, restored from its snapshot, destroyed."""
    async with http_client(url, token, "legacy") as client:
        vol = await ok(client, "create_volume", app=app, name="data", size_gb=1)
        vid = vol["id"]
        if (vol["state"], vol["size_gb"], vol["attached_machine_id"]) != ("created", 1, None):
            fail(f"create_volume returned {vol}")
        await tool_error(client, "create_volume", {"app": app, "name": "data", "size_gb": 0},
                         "size_gb = 0", "allowed values are 1 to")
        await tool_error(client, "get_volume", {"app": app, "volume_id": "vol_0000000000000000"},
                         "not found", "list_volumes")
        await tool_error(client, "get_volume", {"app": app, "volume_id": "../../etc"}, "invalid")
        await tool_error(client, "extend_volume", {"app": app, "volume_id": vid, "size_gb": 1},
                         "only grow", "2 to")
        mounts = [{"volume": vid, "path": "/data"}]
        mid = (await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"],
                        mounts=mounts))["id"]
        if (await ok(client, "get_volume", app=app, volume_id=vid))["attached_machine_id"] != mid:
            fail(f"get_volume does not show machine {mid} attached")
        await tool_error(client, "run_machine", {"app": app, "image": image, "mounts": mounts},
                         "attached to machine", mid, "get_volume")
        # File tools reach into the volume, as the machine sees it.
        await ok(client, "write_file", app=app, machine_id=mid, path="/data/kept.txt",
                 content="kept on the volume\n")
        if await sh(client, app, mid, "cat /data/kept.txt && sync") != "kept on the volume\n":
            fail("write_file to a mounted volume is not what the machine sees")
        if "kept.txt" not in {e["name"] for e in
                              (await ok(client, "list_dir", app=app, machine_id=mid, path="/data"))["entries"]}:
            fail("list_dir of the volume's mount path misses the file")
        snap = await ok(client, "create_volume_snapshot", app=app, volume_id=vid)
        listed = await ok(client, "list_volume_snapshots", app=app, volume_id=vid)
        if [s["id"] for s in listed["snapshots"]] != [snap["id"]] or snap["type"] != "on-demand":
            fail(f"list_volume_snapshots returned {listed}, created {snap}")
        grown = await ok(client, "extend_volume", app=app, volume_id=vid, size_gb=2)
        if grown["volume"]["size_gb"] != 2:
            fail(f"extend_volume returned {grown}")
        if not grown["needs_restart"]:
            kib = int((await sh(client, app, mid, "df -k /data | tail -n 1")).split()[1])
            if kib < 1_500_000:
                fail(f"df inside shows {kib} KiB after growing to 2 GB online")
        await tool_error(client, "extend_volume", {"app": app, "volume_id": vid, "size_gb": 1},
                         "only grow", "now 2")
        await tool_error(client, "destroy_volume", {"app": app, "volume_id": vid},
                         "attached to machine", "get_volume")
        # A stopped machine's volume is reached too (mounted for the call).
        await ok(client, "stop_machine", app=app, machine_id=mid)
        read = await ok(client, "read_file", app=app, machine_id=mid, path="/data/kept.txt")
        if read["content"] != "kept on the volume\n":
            fail(f"read_file on the volume of a stopped machine: {read}")
        await ok(client, "destroy_machine", app=app, machine_id=mid, force=True)

        restored = await ok(client, "create_volume", app=app, name="restored",
                            snapshot_id=snap["id"])
        other = (await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"],
                          mounts=[{"volume": restored["id"], "path": "/data"}]))["id"]
        if await sh(client, app, other, "cat /data/kept.txt") != "kept on the volume\n":
            fail("the restored volume lacks the file written before the snapshot")
        await ok(client, "destroy_machine", app=app, machine_id=other, force=True)
        for volume in [vid, restored["id"]]:
            gone = await ok(client, "destroy_volume", app=app, volume_id=volume)
            if gone != {"id": volume, "destroyed": True}:
                fail(f"destroy_volume returned {gone}")
        if (await ok(client, "list_volumes", app=app))["volumes"]:
            fail("destroy_volume left volumes listed")
        kept = await ok(client, "list_volume_snapshots", app=app, volume_id=vid)
        if [s["id"] for s in kept["snapshots"]] != [snap["id"]]:
            fail(f"snapshots of a destroyed volume should stay: {kept}")


async def scenario_secrets(url, token, app, image):
    """Secrets reach machines at their next start; no answer ever holds a value."""
    values = {"API_KEY": "sk-mcp-value-0451", "DB_PASSWORD": "hunter2-mcp-value"}

    def assert_no_values(result):
        text = result.model_dump_json()
        for value in values.values():
            if value in text:
                fail(f"a secret value is in a tool answer: {text}")

    async with http_client(url, token, "legacy") as client:
        mid = (await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"]))["id"]
        result = await call_ok(client, "set_secrets", {"app": app, "values": values})
        assert_no_values(result)
        if "next start" not in result.content[0].text:
            fail(f"set_secrets should say when machines see the secrets: {result.content[0].text}")
        result = await call_ok(client, "list_secrets", {"app": app})
        assert_no_values(result)
        secrets = result.structured_content["secrets"]
        if [s["name"] for s in secrets] != sorted(values) or not all(s["digest"] for s in secrets):
            fail(f"list_secrets returned {secrets}")
        # The main process (under PID 1, which has the same environment) and
        # exec'd processes alike get secrets at the machine's next start.
        main_env = "tr '\\0' '\\n' < /proc/1/environ"
        if "API_KEY" in await sh(client, app, mid, main_env):
            fail("a running machine's main process saw a secret before its next start")
        if await sh(client, app, mid, "echo $API_KEY") != "\n":
            fail("exec saw a secret before the machine's next start")
        await ok(client, "restart_machine", app=app, machine_id=mid)
        if f"API_KEY={values['API_KEY']}\n" not in await sh(client, app, mid, main_env):
            fail("the restarted machine's main process lacks the secrets")
        if await sh(client, app, mid, "echo $API_KEY") != values["API_KEY"] + "\n":
            fail("exec lacks a secret after the machine's restart")

        bad = [
            ({"app": app, "values": "sk-mcp-value-0451"}, "values must be an object"),
            ({"app": app, "values": {"API_KEY": ["sk-mcp-value-0451"]}}, "must be a string"),
            ({"app": app, "values": {"1BAD": "sk-mcp-value-0451"}}, "1BAD"),
            ({"app": app, "values": {"FLY_X": "hunter2-mcp-value"}}, "reserved"),
            ({"app": app, "values": {}}, "no secrets given"),
            ({"app": "no-such-app", "values": values}, "not found"),
        ]
        for arguments, needle in bad:
            text = await tool_error(client, "set_secrets", arguments, needle)
            if any(value in text for value in values.values()):
                fail(f"a set_secrets error shows a value: {text}")
        await tool_error(client, "unset_secrets", {"app": app, "names": []}, "no secrets given")

        result = await call_ok(client, "unset_secrets", {"app": app, "names": ["API_KEY", "NEVER_SET"]})
        assert_no_values(result)
        if [s["name"] for s in result.structured_content["secrets"]] != ["DB_PASSWORD"]:
            fail(f"unset_secrets left {result.structured_content}")
        await ok(client, "restart_machine", app=app, machine_id=mid)
        env = await sh(client, app, mid, main_env)
        if "API_KEY" in env or f"DB_PASSWORD={values['DB_PASSWORD']}\n" not in env:
            fail(f"after unset_secrets and a restart the main process has {env}")
        await ok(client, "unset_secrets", app=app, names=["DB_PASSWORD"])
        await ok(client, "destroy_machine", app=app, machine_id=mid, force=True)


async def scenario_egress(url, token, app, image):
    """An app's egress policy is read and replaced through the tools; machines get the proxy."""
    async with http_client(url, token, "legacy") as client:
        policy = await ok(client, "get_egress", app=app)
        if policy != {"default": "deny", "allow": [], "deny": []}:
            fail(f"a new app's policy should be the daemon's default deny: {policy}")
        policy = await ok(client, "set_egress", app=app, default="deny",
                          allow=["Deb.Debian.org", "*.pypi.org:443"], deny=["evil.pypi.org"])
        if policy["allow"] != ["deb.debian.org", "*.pypi.org:443"] or policy["deny"] != ["evil.pypi.org"]:
            fail(f"set_egress should answer the policy normalized: {policy}")
        if await ok(client, "get_egress", app=app) != policy:
            fail("get_egress does not show what set_egress stored")
        await tool_error(client, "set_egress", {"app": app, "default": "deny", "allow": ["http://x.org"]},
                         "allow[0]", "not a URL")
        await tool_error(client, "set_egress", {"app": app, "default": "maybe"}, "unknown variant")
        await tool_error(client, "get_egress", {"app": "no-such-app"}, "not found")
        log = await ok(client, "get_egress_log", app=app)
        if log != {"entries": []}:
            fail(f"no machine used egress yet, the log should be empty: {log}")
        mid = (await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"]))["id"]
        env = await sh(client, app, mid, "echo $HTTP_PROXY $https_proxy; echo $NO_PROXY")
        proxy, no_proxy = env.splitlines()
        if not proxy.startswith("http://[fdaa:") or "]:3128 " not in proxy + " ":
            fail(f"machines should get the egress proxy at the service address: {env}")
        if ".internal" not in no_proxy.split(","):
            fail(f"NO_PROXY should name the internal names: {env}")
        await ok(client, "set_egress", app=app, default="deny")
        await ok(client, "destroy_machine", app=app, machine_id=mid, force=True)


async def scenario_bad(url, token, app, image, host_file):
    async with http_client(url, token, "legacy") as client:
        await tool_error(client, "run_machine", {"app": app}, "missing field", "image")
        await tool_error(client, "run_machine", {"app": app, "image": image, "command": "sleep 1"},
                         "invalid type")
        await tool_error(client, "exec", {"app": app, "machine_id": "0123456789abcd",
                                          "command": ["true"]}, "not found", "list_machines")
        await tool_error(client, "get_machine", {"app": app, "machine_id": "nope"}, "invalid")
        await tool_error(client, "get_machine", {"app": "no-such-app", "machine_id": "0123456789abcd"},
                         "not found")
        await tool_error(client, "list_dir", {"app": app, "machine_id": "0123456789abcd", "bogus": 1},
                         "unknown field")
        mid = (await ok(client, "run_machine", app=app, image=image, command=["sleep", "infinity"]))["id"]
        target = {"app": app, "machine_id": mid}
        for path in ["../../etc/shadow", "/../../etc/shadow", "/root/../../etc/shadow", "relative/x"]:
            await tool_error(client, "read_file", {**target, "path": path}, path)
            await tool_error(client, "write_file", {**target, "path": path, "content": "x"}, path)
        await tool_error(client, "list_dir", {**target, "path": "../.."}, "absolute")
        # Absolute symlinks planted in the machine resolve inside its rootfs.
        await ok(client, "exec", **target, command=["sh", "-c", f"ln -s {host_file} /root/evil && "
                                                      "ln -s / /root/top && mkfifo /root/fifo"])
        await tool_error(client, "read_file", {**target, "path": "/root/evil"}, "does not exist")
        await tool_error(client, "write_file", {**target, "path": "/root/evil", "content": "owned"},
                         "does not exist")
        await tool_error(client, "read_file", {**target, "path": "/root/top/etc"}, "directory")
        await tool_error(client, "read_file", {**target, "path": "/root/fifo"}, "not a regular file")
        await ok(client, "write_file", **target, path="/root/top/tmp/inside", content="in the machine")
        shown = await ok(client, "exec", **target, command=["cat", "/tmp/inside"])
        if shown["stdout"] != "in the machine":
            fail(f"a write through /root/top did not land inside the machine: {shown}")
        listing = await ok(client, "list_dir", **target, path="/root")
        evil = next(e for e in listing["entries"] if e["name"] == "evil")
        if (evil["kind"], evil["link_target"]) != ("symlink", host_file):
            fail(f"list_dir should show the symlink unfollowed: {evil}")
        await tool_error(client, "read_file", {**target, "path": "/root/work", "limit": 0}, "limit")
        await tool_error(client, "write_file", {**target, "path": "/x", "content": "!", "encoding": "base64"},
                         "base64")
        await tool_error(client, "write_file", {**target, "path": "/x", "content": "", "mode": "999"}, "mode")
        await tool_error(client, "wait_machine", {**target, "state": "stopped", "timeout_seconds": 1},
                         "did not reach")
        await tool_error(client, "wait_machine", {**target, "state": "sideways"}, "unknown variant")
        await tool_error(client, "destroy_machine", target, "force=true")
        await ok(client, "destroy_machine", **target, force=True)
        await tool_error(client, "read_file", {**target, "path": "/etc/passwd"}, "destroyed")


def median_ms(samples):
    return statistics.median(samples) * 1000


async def timed(rounds, call):
    await call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


def sse_result(response):
    """The JSON-RPC result in a Streamable HTTP response (SSE or JSON)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()["result"]
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            return json.loads(line[5:])["result"]
    fail(f"no result in {response.status_code} {response.text!r}")


async def scenario_bench(url, token, app, image, rounds):
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=url, headers=auth, timeout=60) as http:
        headers = {"Accept": "application/json, text/event-stream"}
        init = await http.post("/mcp", headers=headers, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "1"}}})
        headers["Mcp-Session-Id"] = init.headers["mcp-session-id"]
        headers["MCP-Protocol-Version"] = "2025-11-25"
        await http.post("/mcp", headers=headers,
                        json={"jsonrpc": "2.0", "method": "notifications/initialized"})

        async def rpc(method, params):
            response = await http.post("/mcp", headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": method, "params": params})
            return sse_result(response)

        machine = await rpc("tools/call", {"name": "run_machine", "arguments": {
            "app": app, "image": image, "command": ["sleep", "infinity"]}})
        mid = machine["structuredContent"]["id"]
        api = f"/v1/apps/{app}/machines/{mid}"
        exec_body = {"command": ["true"]}
        rows = [
            ("tools/list vs GET /v1/apps",
             await timed(rounds, lambda: rpc("tools/list", {})),
             await timed(rounds, lambda: http.get("/v1/apps"))),
            ("get_machine",
             await timed(rounds, lambda: rpc("tools/call", {"name": "get_machine", "arguments": {
                 "app": app, "machine_id": mid}})),
             await timed(rounds, lambda: http.get(api))),
            ("exec `true`",
             await timed(rounds, lambda: rpc("tools/call", {"name": "exec", "arguments": {
                 "app": app, "machine_id": mid, "command": ["true"]}})),
             await timed(rounds, lambda: http.post(f"{api}/exec", json=exec_body))),
        ]
        await http.delete(f"{api}?force=true")
    print(f"| operation ({rounds} rounds, medians) | MCP /mcp | HTTP API | MCP overhead |")
    print("|---|---|---|---|")
    for name, mcp_ms, api_ms in rows:
        print(f"| {name} | {mcp_ms:.2f} ms | {api_ms:.2f} ms | {mcp_ms - api_ms:+.2f} ms |")


READ_TOOLS = {
    "get_egress", "get_egress_log", "get_machine", "get_volume", "list_apps", "list_images",
    "list_machines", "list_secrets", "list_storage", "list_volume_snapshots", "list_volumes",
    "tail_logs", "wait_machine",
}


async def scenario_scoped(url, token, app, machine_id):
    """TOKEN may only read APP: tools/list shows the reading tools alone,
    and a tool it may not use is refused naming the missing right."""
    for mode in ["legacy", "2026-07-28"]:
        async with http_client(url, token, mode) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            if tools != READ_TOOLS:
                fail(f"{mode}: a read-only token lists {sorted(tools)}")
            machines = await ok(client, "list_machines", app=app)
            if [m["id"] for m in machines["machines"]] != [machine_id]:
                fail(f"{mode}: list_machines gave {machines}")
            await tool_error(client, "stop_machine", {"app": app, "machine_id": machine_id},
                             "'lifecycle'", machine_id)
            await tool_error(client, "exec", {"app": app, "machine_id": machine_id,
                                              "command": ["true"]}, "'exec'")


def main():
    args = sys.argv[1:]
    scenarios = {
        "http": lambda: scenario_http(*args[1:6]),
        "stdio": lambda: scenario_stdio(*args[1:6]),
        "bad": lambda: scenario_bad(*args[1:6]),
        "pull": lambda: scenario_pull(*args[1:5]),
        "volumes": lambda: scenario_volumes(*args[1:5]),
        "secrets": lambda: scenario_secrets(*args[1:5]),
        "egress": lambda: scenario_egress(*args[1:5]),
        "scoped": lambda: scenario_scoped(*args[1:5]),
        "bench": lambda: scenario_bench(*args[1:5], int(args[5])),
    }
    if not args or args[0] not in scenarios:
        fail(__doc__)
    asyncio.run(scenarios[args[0]]())
    print("OK")


if __name__ == "__main__":
    main()
