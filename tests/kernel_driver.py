"""Runs one real Jupyter kernel for tests/e2e_kernel.py, which cannot import jupyter_client
itself (it runs under the plain python3 of `make e2e`). Run under $TEST_VENV/bin/python:
the kernel (ipykernel's own spec) then runs under that python too, with this process's
environment and working folder.

Reads one request per line on stdin, {"code": "...", "timeout": seconds}, executes it as a
cell, and answers one line on stdout:
    {"status": "ok" | "error" | "timeout",
     "streams": [["stdout" | "stderr", text], ...],   # every iopub stream message, in order
     "results": ["text/plain of each execute_result or display_data", ...],
     "error": {"ename": ..., "evalue": ..., "traceback": [...]} or null}
The first line written, before any request, is {"ready": true}. End of stdin ends the kernel.
"""
import json
import queue
import sys
import time

from jupyter_client import KernelManager


def execute(client, code, timeout):
    msg_id = client.execute(code, allow_stdin=False)
    reply = {"status": "timeout", "streams": [], "results": [], "error": None}
    deadline = time.monotonic() + timeout
    idle = False
    while not idle:
        left = deadline - time.monotonic()
        if left <= 0:
            return reply
        try:
            msg = client.get_iopub_msg(timeout=left)
        except queue.Empty:
            return reply
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            reply["streams"].append([content["name"], content["text"]])
        elif kind in ("execute_result", "display_data"):
            reply["results"].append(content["data"].get("text/plain", ""))
        elif kind == "error":
            reply["error"] = {key: content[key] for key in ("ename", "evalue", "traceback")}
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    while True:
        msg = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 1))
        if msg["parent_header"].get("msg_id") == msg_id:
            reply["status"] = msg["content"]["status"]
            return reply


def main():
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            reply = execute(client, request["code"], request.get("timeout", 120))
            print(json.dumps(reply), flush=True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
