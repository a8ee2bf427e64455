"""A slow OpenAI-compatible upstream for the server's production tests: ``/v1/chat/completions``
streams ``max_tokens`` chunks, one every ``DELAY`` seconds (``word{i} ``), so a generation is long
and I/O-bound, as behind vLLM. ``GET /stats`` says how many tokens it sent and when the last one
went, so a test can see the generation stop when its client leaves.

Run: ``python tests/llm_stub.py PORT [DELAY]`` (it prints ``ready`` once listening).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
STATS = {"sent": 0, "last_sent": 0.0, "streams": 0, "open": 0, "closed": 0}


async def completions(request: Request) -> StreamingResponse | JSONResponse:
    body = await request.json()
    n = int(body.get("max_tokens") or 16)
    if not body.get("stream"):
        text = " ".join(f"word{i}" for i in range(n))
        await asyncio.sleep(DELAY * n)
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": text},
                                          "finish_reason": "length"}]})

    async def chunks():  # one token per DELAY; a closed client ends this at the next send
        STATS["streams"] += 1
        STATS["open"] += 1
        try:
            for i in range(n):
                await asyncio.sleep(DELAY)
                delta = {"choices": [{"index": 0, "delta": {"content": f"word{i} "}}]}
                yield f"data: {json.dumps(delta)}\n\n"
                STATS["sent"] += 1
                STATS["last_sent"] = time.time()
            yield "data: [DONE]\n\n"
        finally:
            STATS["open"] -= 1
            STATS["closed"] += 1

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({**STATS, "now": time.time()})


app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                        Route("/stats", stats)])

if __name__ == "__main__":
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        await task

    asyncio.run(main())
