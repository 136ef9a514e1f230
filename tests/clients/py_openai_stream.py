#!/usr/bin/python3
"""OpenAI chat completion over raw HTTP with Python `requests` or `httpx` (Debian packages).

Run with /usr/bin/python3. Env: OPENAI_BASE_URL (.../v1), OPENAI_API_KEY, MODEL, PROMPT,
STREAM=1 (SSE with stream_options.include_usage), CLIENT=requests|httpx (default requests).
Proxy and CA settings come from the usual environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE,
SSL_CERT_FILE). Prints one JSON line like the .mjs clients: {"ok":true,"content","usage",...}.
"""
import json
import os
import sys


def fail(message, status=None):
    print(json.dumps({"ok": False, "error": str(message), "status": status}))
    sys.exit(1)


def sse_data(lines):
    """Yields the data of each SSE event from an iterator of text lines."""
    data = []
    for line in lines:
        line = line.rstrip("\r")
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    if data:
        yield "\n".join(data)


def split_lines(chunks):
    """Lines from text chunks, blank lines kept (httpx 0.23's iter_lines drops them)."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        while "\n" in pending:
            line, pending = pending.split("\n", 1)
            yield line
    if pending:
        yield pending


def main():
    base = os.environ.get("OPENAI_BASE_URL") or fail("OPENAI_BASE_URL is required")
    key = os.environ.get("OPENAI_API_KEY") or fail("OPENAI_API_KEY is required")
    stream = os.environ.get("STREAM") in ("1", "true")
    client = os.environ.get("CLIENT", "requests")
    body = {
        "model": os.environ.get("MODEL", "gpt-4o-mini"),
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": os.environ.get("PROMPT", "say hello")},
        ],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    url = base.rstrip("/") + "/chat/completions"
    timeout = float(os.environ.get("TIMEOUT_MS", "10000")) / 1000.0

    if client == "httpx":
        import httpx

        with httpx.Client(timeout=timeout) as session:
            with session.stream("POST", url, headers=headers, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    fail(response.text, response.status_code)
                if stream:
                    events = list(sse_data(split_lines(response.iter_text())))
                else:
                    response.read()
                    payload = response.json()
    elif client == "requests":
        import requests

        response = requests.post(url, headers=headers, json=body, stream=stream, timeout=timeout)
        if response.status_code != 200:
            fail(response.text, response.status_code)
        if stream:
            events = list(sse_data(split_lines(
                response.iter_content(chunk_size=None, decode_unicode=True))))
        else:
            payload = response.json()
    else:
        fail("CLIENT must be requests or httpx")

    if not stream:
        print(json.dumps({
            "ok": True,
            "client": client,
            "model": payload["model"],
            "content": payload["choices"][0]["message"]["content"],
            "usage": payload["usage"],
            "chunks": 0,
        }))
        return
    content, usage, model, chunks = "", None, None, 0
    for data in events:
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        chunks += 1
        model = chunk.get("model", model)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices", []):
            content += choice.get("delta", {}).get("content") or ""
    print(json.dumps({"ok": True, "client": client, "model": model, "content": content,
                      "usage": usage, "chunks": chunks, "done": events[-1:] == ["[DONE]"]}))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as error:  # a connection or TLS failure: one JSON line, exit 1
        fail(f"{type(error).__name__}: {error}")
