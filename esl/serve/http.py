"""The HTTP API of an :class:`~esl.serve.App` on aiohttp.

Routes (JSON in, JSON out; every error is ``{"error": "..."}`` with a 4xx/5xx status):

- ``POST /scenarios/{name}``: ``{"destination", "caller_id"?, "caller_id_name"?, "data"?, "timeout"?}``
  -> ``202 {"id", "state", "url", "events"}`` at once;
- ``GET /calls``: live calls and recently ended ones (``?limit=N`` of those, newest first); ``GET /calls/{id}``; ``DELETE /calls/{id}``
  hangs up every leg;
- ``GET /calls/{id}/events``: the call's lifecycle as server-sent events, from the start (or after
  ``Last-Event-ID``) until it ends;
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (connected to FreeSWITCH), without auth.

Every other route needs ``Authorization: Bearer <token>``. A server without a
token refuses to start unless it listens on loopback only.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from esl.exceptions import ConnectionError as ESLConnectionError
from esl.serve.app import App, CallRecord, LimitExceeded

__all__ = ["Server", "is_loopback", "load_token"]

_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_FIELDS = frozenset({"destination", "caller_id", "caller_id_name", "data", "timeout"})
_CALLER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,80}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True when ``host`` names only the local machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(path: str | None = None, env: str = "ESL_SERVE_TOKEN") -> str | None:
    """The bearer token from the file ``path`` (first line, stripped), else from ``$env``; None if neither.

    An empty token is refused (ValueError): it would match an empty header.
    """
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
        if not token:
            raise ValueError(f"the token file {path} is empty")
        return token
    value = os.environ.get(env)
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"${env} is set but empty")
    return value.strip()


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Server:
    """The HTTP API for ``app``, listening on ``host:port`` (``port=0``: a free one; see :attr:`port`).

    ``token``: the bearer token every API request must carry (``None`` only on
    loopback). ``max_body``: bytes a request body may have (413 beyond).
    ``max_streams``: concurrent event streams (429 beyond). ``heartbeat``:
    seconds between keep-alive comments on an idle event stream.
    """

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 8080, *, token: str | None = None,
                 max_body: int = 64 * 1024, max_streams: int = 1000, heartbeat: float = 15.0,
                 destinations: str | None = None) -> None:
        if token is None and not is_loopback(host):
            raise ValueError(f"refusing to serve on {host} without a bearer token "
                             "(set one, or listen on 127.0.0.1)")
        if token is not None and (not token or not token.isprintable()):
            raise ValueError("the bearer token must be non-empty printable text")
        self.app = app
        self.host = host
        self._port = port
        self._token = token.encode() if token is not None else None
        self.max_body = max_body
        self.max_streams = max_streams
        self.heartbeat = heartbeat
        self.destinations = re.compile(destinations) if destinations else None
        self._streams = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.web = self._make_web_app()

    def __repr__(self) -> str:
        return f"<esl.serve.Server {self.host}:{self.port} auth={'on' if self._token else 'off'}>"

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with ``port=0``)."""
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> Server:
        """Start the app (connect to FreeSWITCH) and listen."""
        await self.app.start()
        self._runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port, backlog=1024, reuse_address=True)
        await self._site.start()
        return self

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the scenarios (their calls are hung up), then the listener."""
        await self.app.stop(grace)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- aiohttp app ---------------------------------------------------------------

    def _make_web_app(self) -> web.Application:
        w = web.Application(client_max_size=self.max_body, middlewares=[self._errors, self._auth])
        w.router.add_get("/healthz", self._healthz)
        w.router.add_get("/readyz", self._readyz)
        w.router.add_post("/scenarios/{name}", self._start)
        w.router.add_get("/calls", self._list)
        w.router.add_get("/calls/{id}", self._get)
        w.router.add_delete("/calls/{id}", self._delete)
        w.router.add_get("/calls/{id}/events", self._events)
        return w

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own HTTP errors (404, 405, 413...) as JSON bodies."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
            message = exc.reason if exc.status != 413 else f"request body larger than {self.max_body} bytes"
            return _error(exc.status, message, **headers)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path in _OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _error(401, "missing bearer token", **{"WWW-Authenticate": 'Bearer realm="esl"'})
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return _error(401, "invalid bearer token",
                          **{"WWW-Authenticate": 'Bearer realm="esl", error="invalid_token"'})
        return await handler(request)

    # -- health ----------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.app.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not connected to FreeSWITCH"}, status=503)

    # -- scenarios -----------------------------------------------------------------------

    async def _start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.app.scenarios:
            return _error(404, f"no scenario named {name!r}")
        if request.content_type != "application/json":
            return _error(415, "the body must be JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "the body is not valid JSON: nested too deeply")
        problem = self._validate(body)
        if problem is not None:
            return _error(422, problem)
        cid = body.get("caller_id")
        cid_number = cid.get("number") if isinstance(cid, dict) else cid
        cid_name = cid.get("name") if isinstance(cid, dict) else body.get("caller_id_name")
        try:
            rec = self.app.start_call(name, body["destination"], body.get("data") or {},
                                      caller_id_number=cid_number, caller_id_name=cid_name,
                                      timeout=body.get("timeout"))
        except LimitExceeded as exc:
            return _error(429, str(exc), **{"Retry-After": "1"})
        except ESLConnectionError as exc:
            return _error(503, str(exc), **{"Retry-After": "1"})
        return web.json_response(
            {"id": rec.id, "state": rec.state, "url": f"/calls/{rec.id}", "events": f"/calls/{rec.id}/events"},
            status=202, headers={"Location": f"/calls/{rec.id}"},
        )

    def _validate(self, body: Any) -> str | None:
        """Why ``body`` is not a valid scenario request, or None."""
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            return f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(_FIELDS))})"
        dest = body.get("destination")
        if not isinstance(dest, str) or not dest or len(dest) > 1024:
            return "'destination' must be a non-empty string (a dial string such as 'user/1000')"
        if any(c.isspace() or not c.isprintable() for c in dest):
            return "'destination' must not contain spaces or control characters"
        if self.destinations is not None and not self.destinations.fullmatch(dest):
            return f"'destination' {dest!r} is not allowed by this server"
        cid = body.get("caller_id")
        if isinstance(cid, dict):
            if set(cid) - {"number", "name"}:
                return "'caller_id' object takes only 'number' and 'name'"
            values = list(cid.values())
        else:
            values = [cid]
        values.append(body.get("caller_id_name"))
        for value in values:
            if value is not None and (not isinstance(value, str) or not _CALLER_ID.match(value)):
                return "caller id values must be strings of 1-80 printable characters"
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            return "'data' must be a JSON object"
        timeout = body.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 1 <= timeout <= 3600):
            return "'timeout' must be a number of seconds from 1 to 3600"
        return None

    # -- calls --------------------------------------------------------------------------

    def _record(self, request: web.Request) -> CallRecord:
        rec = self.app.get(request.match_info["id"])
        if rec is None:
            raise web.HTTPNotFound(reason="no such call (unknown, or ended and expired)")
        return rec

    async def _list(self, request: web.Request) -> web.Response:
        """Live calls, and the newest ended ones (``?limit=N``, default 100)."""
        text = request.query.get("limit", "100")
        if not text.isdigit():
            return _error(422, "'limit' must be a non-negative integer")
        limit = int(text)
        self.app._expire()
        live = [rec.to_json() for rec in self.app.calls.values()]
        ended = [rec.to_json() for rec in itertools.islice(reversed(self.app.finished.values()), limit)]
        return web.json_response({"live": live, "ended": ended, "ended_kept": len(self.app.finished)})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._record(request).to_json())

    async def _delete(self, request: web.Request) -> web.Response:
        rec = self._record(request)
        await self.app.hangup(rec)
        return web.json_response(rec.to_json())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        rec = self._record(request)
        if self._streams >= self.max_streams:
            return _error(429, f"{self._streams} event streams are open (max {self.max_streams})",
                          **{"Retry-After": "1"})
        last = request.headers.get("Last-Event-ID", "0")
        seq = int(last) if last.isdigit() else 0
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        self._streams += 1
        try:
            await resp.prepare(request)
            while True:
                for number, name, payload in rec.events_after(seq):
                    await resp.write(f"id: {number}\nevent: {name}\ndata: {json.dumps(payload)}\n\n".encode())
                    seq = number
                if rec.ended.is_set() and not rec.events_after(seq):
                    break
                before = seq
                await rec.wait_changed(self.heartbeat)
                if not rec.events_after(before) and not rec.ended.is_set():
                    await resp.write(b": keep-alive\n\n")
            await resp.write_eof()
        except ConnectionResetError:  # the client went away
            pass
        finally:
            self._streams -= 1
        return resp
