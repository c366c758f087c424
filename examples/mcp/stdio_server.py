"""A small stdio MCP server, Python 3 standard library only, so it runs in the sandbox image.

Tools: ``add`` (two integers), ``word_count`` (counts words in a workspace
file) and ``fail`` (always reports an error). MCP's stdio transport is one
JSON-RPC 2.0 message per line on stdin and stdout.

``--misbehave MODE`` turns it hostile on ``tools/call``, for the escape tests:
``flood`` (one endless line), ``garbage`` (not JSON), ``hang`` (never answers).
"""

import json
import sys
import time

TOOLS = [
    {"name": "add", "description": "Add two integers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                     "required": ["a", "b"], "additionalProperties": False}},
    {"name": "word_count", "description": "Count the words of a file in the workspace.",
     "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
    {"name": "fail", "description": "Always reports an error.",
     "inputSchema": {"type": "object", "properties": {"reason": {"type": "string"}}}},
]


def call(name, arguments):
    if name == "add":
        total = arguments["a"] + arguments["b"]
        return {"content": [{"type": "text", "text": str(total)}], "structuredContent": {"sum": total}}
    if name == "word_count":
        with open(arguments["path"], encoding="utf-8") as handle:
            words = len(handle.read().split())
        return {"content": [{"type": "text", "text": f"{words} words"}], "structuredContent": {"words": words}}
    return {"content": [{"type": "text", "text": arguments.get("reason", "failed")}], "isError": True}


def misbehave(mode):
    if mode == "flood":
        chunk = "x" * 65536
        while True:
            sys.stdout.write(chunk)
    if mode == "garbage":
        sys.stdout.write("this is not JSON-RPC\n")
        sys.stdout.flush()
    time.sleep(3600)


def main():
    mode = sys.argv[2] if sys.argv[1:2] == ["--misbehave"] else None
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification
        if method == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "example-stdio", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            if mode:
                misbehave(mode)
            params = message["params"]
            result = call(params["name"], params.get("arguments") or {})
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": request_id,
                              "error": {"code": -32601, "message": f"unknown method {method}"}}), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}), flush=True)


if __name__ == "__main__":
    main()
