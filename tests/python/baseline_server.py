#!/usr/bin/env python3
"""Baseline for the start-up benchmark (`tests/src/bin/bench.rs`, `bash scripts/bench.sh`).

The smallest stdio MCP server the official Python `mcp` SDK (2.x, `MCPServer`, formerly
FastMCP) makes, exposing 12 trivial tools: as many as molecule-mcp serves. The bench spawns
it with `.venv/bin/python` exactly like the release binary and measures spawn → `initialize`
reply, spawn → `tools/list` reply and peak RSS (VmHWM) the same way.

Run by hand: `.venv/bin/python tests/python/baseline_server.py` and type newline-delimited
JSON-RPC on stdin.
"""

from mcp.server.mcpserver import MCPServer

TOOL_COUNT = 12

server = MCPServer("baseline")


def _make_tool(index: int):
    def tool(text: str = "") -> str:
        return text

    tool.__name__ = f"tool_{index:02d}"
    tool.__doc__ = f"Trivial tool {index}: returns its argument."
    return tool


for _i in range(TOOL_COUNT):
    server.tool(name=f"tool_{_i:02d}")(_make_tool(_i))


if __name__ == "__main__":
    server.run()
