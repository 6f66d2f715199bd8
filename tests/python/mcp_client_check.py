#!/usr/bin/env python3
"""Drives the real `molecule-mcp` binary with the official Python `mcp` SDK (a real client).

Used by `tests/tests/python_client.rs`; runnable by hand too. For each requested connect mode
(`legacy`, `2026-07-28`, `auto`) it spawns the binary through `mcp.Client(StdioServerParameters
(...), mode=...)` and checks, in order:

1. the negotiated protocol version and `serverInfo.name == "molecule-mcp"`;
2. `tools/list`: the 12 tools in the expected (deterministic) order, each with an object
   `inputSchema`, identical on a second listing;
3. `list_peers`: not an error, names the expected peer id;
4. `send_message_to_user` with a small text attachment: not an error, reports 1 attachment;
5. `wait_for_message`: not an error, carries `structuredContent` with the expected canvas
   text (see "Message injection" below), then `inbox_pop` of its `activity_id` removes it.

Input: one JSON object on stdin, or in the file named by the first argument:

    {
      "binary": "/path/to/molecule-mcp",
      "env": {"PLATFORM_URL": "...", "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS": "1", ...},
      "runs": [
        {"mode": "legacy", "env": {"WORKSPACE_ID": "...", "MOLECULE_WORKSPACE_TOKEN": "...",
                                   "CONFIGS_DIR": "..."},
         "peer_id": "...", "attachment_text": "...", "message_text": "..."},
        ...
      ],
      "timeout_secs": 40
    }

`env` is shared by every run, a run's `env` is added on top. The SDK's stdio transport passes
only HOME, LOGNAME, PATH, SHELL, TERM and USER from this process, so everything the binary
needs must be in these maps.

Message injection: if a run has `message_text`, the message must already be in the
workspace's feed (injected before the script started). Otherwise the script generates a text,
prints `{"event": "inject", "mode": ..., "workspace_id": ..., "text": ...}` on stdout and then
waits for the message: the caller (the Rust test) reads that line and injects a canvas message
with exactly that text while the script waits.

Synchronisation: a run with `"sync_before_wait": true` prints `{"event": "checkpoint", "mode":
..., "workspace_id": ...}` just before `wait_for_message` and reads one line from stdin before
going on, so the caller can first check the platform side (e.g. wait for heartbeats). With
config on stdin, the config must then be the first stdin line.

Output: one JSON line per run on stdout, `{"mode": ..., "ok": true, ...details}` or
`{"mode": ..., "ok": false, "error": "..."}`; the binary's stderr passes through to this
script's stderr. Exit status 0 when every run passed, 1 when any failed (each failure is also
described on stderr), 2 for unusable input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback
import uuid
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

EXPECTED_TOOLS = [
    "delegate_task",
    "delegate_task_async",
    "check_task_status",
    "list_peers",
    "get_workspace_info",
    "send_message_to_user",
    "wait_for_message",
    "inbox_peek",
    "inbox_pop",
    "chat_history",
    "commit_memory",
    "recall_memory",
]
SERVER_NAME = "molecule-mcp"
SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
MODES = ("legacy", "2026-07-28", "auto")


class CheckFailed(Exception):
    """One check of a run did not hold; the message says which and what was seen."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
    sys.stdout.flush()


def text_of(result: Any) -> str:
    """Concatenated text blocks of a CallToolResult."""
    return "".join(getattr(block, "text", "") for block in result.content or [])


def expect_ok(name: str, result: Any) -> str:
    text = text_of(result)
    check(not result.is_error, f"{name}: isError is true: {text[:300]!r}")
    return text


def expected_version(mode: str) -> str:
    if mode == "legacy":
        # The SDK offers its newest handshake version; a server that knows it echoes it.
        return LATEST_HANDSHAKE_VERSION
    # Both the pinned modern mode and `auto` against a dual-era server end up modern.
    return LATEST_MODERN_VERSION


async def run_one(config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    mode = run["mode"]
    timeout = float(config.get("timeout_secs", 30))
    env = {**config.get("env", {}), **run.get("env", {})}
    check(all(isinstance(v, str) for v in env.values()), "every env value must be a string")
    expected_tools = config.get("expected_tools", EXPECTED_TOOLS)
    details: dict[str, Any] = {"mode": mode}
    started = time.monotonic()

    params = StdioServerParameters(command=config["binary"], args=[], env=env)
    with tempfile.TemporaryDirectory(prefix="mcp-client-check-") as scratch:
        attachment_text = run.get("attachment_text", f"attachment for {mode}\n")
        attachment = os.path.join(scratch, f"note-{mode}.txt")
        with open(attachment, "w", encoding="utf-8") as f:
            f.write(attachment_text)

        async with Client(params, mode=mode, read_timeout_seconds=timeout) as client:
            details["connect_ms"] = round((time.monotonic() - started) * 1000, 1)

            # 1. protocol version and identity.
            version = client.protocol_version
            details["protocol_version"] = version
            check(version == expected_version(mode), f"protocol version {version!r}, expected {expected_version(mode)!r}")
            if mode == "legacy":
                check(version in HANDSHAKE_PROTOCOL_VERSIONS, f"legacy mode negotiated {version!r}")
            info = client.server_info
            if info is None and mode not in ("legacy", "auto"):
                # A pinned modern connection adopts a synthesized discover result, so the
                # identity comes from an explicit server/discover (its _meta serverInfo stamp).
                raw = await client.session.send_discover(version)
                stamp = (raw.get("_meta") or {}).get(SERVER_INFO_META_KEY) or {}
                check(version in raw.get("supportedVersions", []), f"server/discover supportedVersions {raw.get('supportedVersions')!r} lacks {version}")
                details["server_name"] = stamp.get("name")
                details["server_version"] = stamp.get("version")
            else:
                check(info is not None, "the server did not identify itself (serverInfo missing)")
                details["server_name"] = info.name
                details["server_version"] = info.version
            check(details["server_name"] == SERVER_NAME, f"serverInfo.name {details['server_name']!r}, expected {SERVER_NAME!r}")

            # 2. tools/list: count, order, schemas; the same order on a fresh listing.
            listed = await client.list_tools(cache_mode="bypass")
            names = [t.name for t in listed.tools]
            details["tools"] = names
            check(listed.next_cursor is None, f"tools/list returned a nextCursor {listed.next_cursor!r}")
            check(len(names) == len(expected_tools), f"{len(names)} tools listed, expected {len(expected_tools)}: {names}")
            check(names == expected_tools, f"tool order {names}, expected {expected_tools}")
            for tool in listed.tools:
                schema = tool.input_schema
                check(isinstance(schema, dict) and schema.get("type") == "object", f"tool {tool.name}: inputSchema {schema!r} is not an object schema")
            if mode != "legacy":
                stamp = (listed.meta or {}).get(SERVER_INFO_META_KEY) or {}
                check(stamp.get("name") == SERVER_NAME, f"modern tools/list result lacks the serverInfo _meta stamp: {listed.meta!r}")
            again = await client.list_tools(cache_mode="bypass")
            check([t.name for t in again.tools] == names, "a second tools/list returned another order")

            # 3. list_peers.
            peers = await client.call_tool("list_peers", {})
            peers_text = expect_ok("list_peers", peers)
            details["peers_text"] = peers_text
            if run.get("peer_id"):
                check(run["peer_id"] in peers_text, f"list_peers does not name peer {run['peer_id']}: {peers_text!r}")

            # 4. send_message_to_user with one attachment.
            sent = await client.call_tool(
                "send_message_to_user",
                {"message": f"Report from the {mode} client", "attachments": [attachment]},
            )
            sent_text = expect_ok("send_message_to_user", sent)
            details["send_text"] = sent_text
            check("1 attachment" in sent_text, f"send_message_to_user did not report the attachment: {sent_text!r}")

            # 5. wait_for_message (injected before or while waiting), then inbox_pop.
            if run.get("sync_before_wait"):
                emit({"event": "checkpoint", "mode": mode, "workspace_id": env.get("WORKSPACE_ID")})
                go = await anyio.to_thread.run_sync(sys.stdin.readline)
                check(go != "", "stdin closed at a checkpoint")
            wanted = run.get("message_text")
            if wanted is None:
                wanted = f"canvas says hello to the {mode} client ({uuid.uuid4().hex[:8]})"
                emit({"event": "inject", "mode": mode, "workspace_id": env.get("WORKSPACE_ID"), "text": wanted})
            # Half the request timeout, so the tool's own timeout answer wins over the SDK's.
            wait_secs = timeout / 2
            waited = await client.call_tool("wait_for_message", {"timeout_secs": wait_secs})
            expect_ok("wait_for_message", waited)
            message = waited.structured_content
            check(isinstance(message, dict), f"wait_for_message has no structuredContent: {text_of(waited)[:300]!r}")
            check(not message.get("timeout"), f"wait_for_message timed out after {wait_secs} s without a message")
            check(message.get("text") == wanted, f"wait_for_message returned text {message.get('text')!r}, expected {wanted!r}")
            activity_id = message.get("activity_id")
            check(isinstance(activity_id, str) and activity_id != "", f"message without activity_id: {message!r}")
            details["message"] = {k: message.get(k) for k in ("activity_id", "kind", "text", "peer_id")}
            popped = await client.call_tool("inbox_pop", {"activity_id": activity_id})
            expect_ok("inbox_pop", popped)
            check(popped.structured_content == {"removed": True, "activity_id": activity_id}, f"inbox_pop returned {popped.structured_content!r}")
            peek = await client.call_tool("inbox_peek", {})
            expect_ok("inbox_peek", peek)
            remaining = json.loads(text_of(peek) or "[]")
            check(all(m.get("activity_id") != activity_id for m in remaining), f"the popped message is still in inbox_peek: {remaining!r}")

    details["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    details["ok"] = True
    return details


def innermost(e: BaseException) -> BaseException:
    """The first CheckFailed inside (nested) exception groups, else the first leaf."""
    if isinstance(e, BaseExceptionGroup):
        leaves = [innermost(sub) for sub in e.exceptions]
        return next((x for x in leaves if isinstance(x, CheckFailed)), leaves[0])
    return e


async def main_async(config: dict[str, Any]) -> int:
    failures = 0
    # One overall bound per run, beyond the per-request timeouts: a hung client never hangs CI.
    budget = float(config.get("timeout_secs", 30)) * 3
    for run in config["runs"]:
        mode = run.get("mode")
        try:
            if mode not in MODES:
                raise CheckFailed(f"unknown mode {mode!r} (expected one of {MODES})")
            with anyio.fail_after(budget):
                emit(await run_one(config, run))
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next mode runs
            failures += 1
            # A failed check inside `async with Client` reaches us wrapped in the transport's
            # task-group ExceptionGroup; report the check itself.
            root = innermost(e)
            if isinstance(root, CheckFailed):
                reason = str(root)
            elif isinstance(root, TimeoutError):
                reason = f"run exceeded {budget} s or a request timed out"
            else:
                reason = f"{type(root).__name__}: {root}"
                traceback.print_exception(e, file=sys.stderr)
            sys.stderr.write(f"mcp_client_check: mode {mode}: FAILED: {reason}\n")
            emit({"mode": mode, "ok": False, "error": reason})
    return 1 if failures else 0


def load_config(argv: list[str]) -> dict[str, Any]:
    if len(argv) > 1:
        with open(argv[1], encoding="utf-8") as f:
            raw = f.read()
    else:
        # A one-line config leaves the rest of stdin for checkpoint answers; a multi-line
        # config is read to EOF (and then cannot use checkpoints).
        raw = sys.stdin.readline()
        try:
            json.loads(raw)
        except ValueError:
            raw += sys.stdin.read()
    config = json.loads(raw)
    if not isinstance(config, dict) or not isinstance(config.get("binary"), str) or not isinstance(config.get("runs"), list):
        raise ValueError("expected a JSON object with `binary` (string) and `runs` (list)")
    return config


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="python %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(sys.argv)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"mcp_client_check: unusable input: {e}\n")
        return 2
    return anyio.run(main_async, config)


if __name__ == "__main__":
    sys.exit(main())
