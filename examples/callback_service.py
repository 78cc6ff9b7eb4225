"""A callback service over HTTP: call a customer, offer an agent, bridge them.

``POST /scenarios/callback`` with ``{"destination": "<customer dial string>",
"data": {"agent": "<agent dial string>", "name": "Ann"}}`` places the call; once
the customer answers, the scenario asks for 1, rings the agent and bridges the
two legs (both are then legs of the same ``esl.Call``: ``DELETE /calls/{id}``
hangs up both, as does the end of the scenario). Progress streams to ``GET /calls/{id}/events`` as reports.

Run it against FreeSWITCH::

    ESL_SERVE_TOKEN=... esl serve examples.callback_service:app --listen 0.0.0.0:8080

or against the fake FreeSWITCH, with a real HTTP client::

    python examples/callback_service.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import esl
import esl.serve
from esl.types import ChannelState

app = esl.serve.App(
    host=os.environ.get("ESL_HOST", "127.0.0.1"),
    port=int(os.environ.get("ESL_PORT", "8021")),
    password=os.environ.get("ESL_PASSWORD", "ClueCon"),
    max_concurrent=100,
    max_duration=1800,
)


@app.scenario("callback")
async def callback(call: esl.Call, data: dict[str, Any], ctx: esl.serve.Context) -> dict[str, Any]:
    customer = call.first
    ctx.report("answered", name=data.get("name"))
    digits = await customer.play_and_get_digits(2, 5000, "#", "ivr/ivr-please_enter_pin_followed_by_pound.wav",
                                                1, 1, regexp="1")
    if digits != "1":
        ctx.report("declined")
        return {"connected": False}
    ctx.report("calling_agent", agent=data["agent"])
    agent = await esl.Channel.create(customer.protocol, data["agent"], caller_id_name=data.get("name", "Callback"),
                                     timeout=30)
    await agent.wait("CHANNEL_ANSWER", timeout=35)
    await customer.bridge(agent)
    ctx.report("bridged", agent_uuid=agent.uuid)
    try:  # they talk until one hangs up, or the talk limit
        await customer.wait(ChannelState.HANGUP, timeout=data.get("max_talk", 3600))
    except asyncio.TimeoutError:
        ctx.report("talk_limit")
    return {"connected": True, "agent": agent.uuid}  # the server hangs up both legs if still up


async def demo() -> tuple[list[str], dict[str, Any]]:
    """Against a fake FreeSWITCH over real HTTP: (the event names streamed, the final call)."""
    import aiohttp

    from esl.testing import Endpoint, FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:
        fake.endpoints["user/customer"] = Endpoint(answer_after=0.02, dtmf="1")
        fake.endpoints["user/agent"] = Endpoint(answer_after=0.02)
        app.host, app.port = fake.host, fake.port
        async with esl.serve.Server(app, "127.0.0.1", 0, token="demo-token") as server:
            base = f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer demo-token"}) as http:
                body = {"destination": "user/customer",
                        "data": {"agent": "user/agent", "name": "Ann", "max_talk": 0.3}}
                async with http.post(f"{base}/scenarios/callback", json=body) as r:
                    call_id = (await r.json())["id"]
                names = []
                async with http.get(f"{base}/calls/{call_id}/events") as r:
                    async for line in r.content:
                        if line.startswith(b"event: "):
                            names.append(line[7:].decode().strip())
                async with http.get(f"{base}/calls/{call_id}") as r:
                    return names, await r.json()


if __name__ == "__main__":
    events, final = asyncio.run(demo())
    print(events)
    print(final["outcome"], final["result"], [leg["uuid"] for leg in final["legs"]])
