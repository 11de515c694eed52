"""Drives roost's MCP server with the official Python MCP client.

Run by crates/roost/tests/mcp.rs against a real `roost up`; each scenario
exits non-zero with a message on the first unexpected answer.

    client.py http    URL TOKEN APP IMAGE MODE      full lifecycle over Streamable HTTP
    client.py stdio   ROOST_BIN URL TOKEN APP IMAGE  the same tools through `roost mcp`
    client.py bad     URL TOKEN APP IMAGE HOST_FILE  bad tool input gives tool errors
    client.py bench   URL TOKEN APP IMAGE ROUNDS     MCP vs plain HTTP API round trips

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
}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def http_client(url, token, mode):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, cache=None)


async def ok(client, tool, **arguments):
    """Calls a tool that must succeed; returns its structured content."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        fail(f"{tool}({arguments}) failed: {result.content[0].text}")
    if not isinstance(result.structured_content, dict):
        fail(f"{tool} returned no structured content: {result}")
    summary = result.content[0].text.splitlines()[0]
    print(f"{tool}: {summary}")
    return result.structured_content


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


def main():
    args = sys.argv[1:]
    scenarios = {
        "http": lambda: scenario_http(*args[1:6]),
        "stdio": lambda: scenario_stdio(*args[1:6]),
        "bad": lambda: scenario_bad(*args[1:6]),
        "bench": lambda: scenario_bench(*args[1:5], int(args[5])),
    }
    if not args or args[0] not in scenarios:
        fail(__doc__)
    asyncio.run(scenarios[args[0]]())
    print("OK")


if __name__ == "__main__":
    main()
