"""HTTP/1.1 connection limits for `serve()`: header size, read timeout, keep-alive, connections.

uvicorn's default parser (httptools) accepts headers of any size, and no uvicorn parser times out
a request that arrives slowly: a 64 MB header was accepted, and slowloris connections (a header
byte every few seconds) stayed open forever. `guarded_protocol(settings, on_reject)` returns a
subclass of uvicorn's h11 protocol that

- caps the request line + headers at `max_header_bytes` (h11's incomplete-event limit): over it,
  431 and the connection is closed, having buffered at most that much;
- gives every request `read_timeout_s` from its first byte (or from the connection's opening)
  until its head AND body have arrived: otherwise 408 and the connection is closed. If the app is
  already reading the body, it is told (READ_TIMEOUT_FLAG in the ASGI scope), so the request
  counts as 408 in the metrics, not as a disconnect;
- answers a malformed request line or header with 400 (as uvicorn does), as JSON.

Idle keep-alive connections are closed after `keep_alive_s` (uvicorn's timer), and uvicorn answers
503 above `max_connections` open connections. `on_reject(reason)` counts what this layer refused
(`wasm_torch_http_rejections_total{reason}`); requests that reach the app are counted there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from wasm_torch.serve.handler import READ_TIMEOUT_FLAG
from wasm_torch.serve.settings import ServeSettings

Reject = Callable[[str], None]


class _Connection(h11.Connection):
    """h11's connection, remembering the protocol error it raised (for its status hint, 431)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as e:
            self.last_error = e
            raise


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header cap and a per-request read deadline (see module doc)."""

    max_header_bytes: ClassVar[int] = 16 * 1024
    read_timeout_s: ClassVar[float] = 30.0
    on_reject: ClassVar[Reject | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn = _Connection(h11.SERVER, self.max_header_bytes)
        self.conn = self._conn
        self._deadline: asyncio.TimerHandle | None = None
        self._seen_bytes = False

    # --- the read deadline --------------------------------------------------------------------
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _reading(self) -> bool:
        """A request has started arriving and has not fully arrived."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        return state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _sync(self) -> None:
        if self._reading():
            self._arm()
        else:
            self._disarm()

    def _reject(self, reason: str) -> None:
        hook = type(self).on_reject
        if hook is not None:
            hook(reason)

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        in_app = cycle is not None and not cycle.response_complete and self.conn.their_state is h11.SEND_BODY
        if in_app:  # the app is reading the body: it answers 408 (and counts it) when told so
            scope: dict[str, Any] = cast(dict, cycle.scope)  # ASGI scopes may carry extension keys
            scope[READ_TIMEOUT_FLAG] = True
            if not cycle.response_started:
                msg = f"the request body did not arrive within {self.read_timeout_s:g} s"
                self.transport.write(_raw_response(408, "Request Timeout", msg))
            cycle.disconnected = True
            cycle.message_event.set()
        elif self._reading() or not self._seen_bytes:
            if self._seen_bytes:  # a partial head: say why; a silent connection is just closed
                msg = f"the request head did not arrive within {self.read_timeout_s:g} s"
                self.transport.write(_raw_response(408, "Request Timeout", msg))
            self._reject("read_timeout" if self._seen_bytes else "idle_connection")
        else:
            return  # the request arrived meanwhile; the response is on its way
        self.transport.close()

    # --- uvicorn's hooks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends anything is closed too

    def data_received(self, data: bytes) -> None:
        self._seen_bytes = True
        self._arm()
        super().data_received(data)
        if not self.transport.is_closing():
            self._sync()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._sync()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A protocol error before the app saw the request: 431 for a head over the cap, else 400."""
        self._disarm()
        err = self._conn.last_error
        status = err.error_status_hint if err is not None else 400
        if status == 431:
            reason, text = (
                "Request Header Fields Too Large",
                (f"the request line and headers are over the {self.max_header_bytes:,}-byte limit"),
            )
            self._reject("header_too_large")
        else:
            reason, text = "Bad Request", "invalid HTTP request"
            self._reject("bad_http")
        self.transport.write(_raw_response(status, reason, text))
        self.transport.close()


def guarded_protocol(settings: ServeSettings, on_reject: Reject | None = None) -> type[GuardedH11Protocol]:
    """A protocol class with this server's limits (class attributes: uvicorn instantiates it)."""
    return type(
        "ServeH11Protocol",
        (GuardedH11Protocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "read_timeout_s": settings.read_timeout_s,
            "on_reject": staticmethod(on_reject) if on_reject is not None else None,
        },
    )


def uvicorn_options(settings: ServeSettings, on_reject: Reject | None = None) -> dict[str, Any]:
    """The `uvicorn.run` / `uvicorn.Config` keyword arguments that apply these limits."""
    return {
        "http": guarded_protocol(settings, on_reject),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
    }
