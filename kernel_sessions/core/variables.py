"""Variables of a live session: list, read, set, delete — without touching the user's state.

The work is done in the kernel by ``kernel/inspector.py`` (shipped by ``kernelcode``), called
as a silent ``user_expressions`` evaluation from the session watcher's own client: nothing shows
in the execution count, ``In``/``Out``/``_``, history or any attached notebook. While a cell
runs, listings go to a kernel subshell; a kernel without subshells gets the last listing back,
marked stale.
"""

from __future__ import annotations

import ast
import base64
import json
import time
from typing import Any

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kernel_sessions.core import models as M
from kernel_sessions.core.errors import InvalidTransition, KernelSessionError
from kernel_sessions.core.kernel_rpc import ns_call_code
from kernel_sessions.kernel.inspector import gc_paused

BUSY_ANSWER_TIMEOUT = 1.0  # seconds a listing may wait on a busy kernel before going stale
CALL_TIMEOUT = 30.0  # seconds for an idle kernel to answer a variables request
UNAVAILABLE_STATES = (M.DEAD, M.HIBERNATED, M.DELETED, M.STARTING)
LISTING_MIME = "application/json"  # how the kernel's listing_result comes back


def _entries(listing: dict[str, Any]) -> dict[str, Any]:
    """The kernel's rows (``fields`` + ``rows``, compact on the wire) as one dict a variable."""
    fields = listing.pop("fields")
    with gc_paused():
        listing["variables"] = [dict(zip(fields, row)) for row in listing.pop("rows")]
    return listing


class VariableError(KernelSessionError):
    """A variables request the kernel refused (bad name, not found, too large, ...)."""

    STATUS = {"not_found": 404, "too_large": 413, "reserved": 403}

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.reason = str(result.get("error", "error"))
        self.status = self.STATUS.get(self.reason, 400)
        detail = f" ({result['detail']})" if result.get("detail") else ""
        super().__init__(self._message(result) + detail)

    @staticmethod
    def _message(r: dict[str, Any]) -> str:
        name = r.get("name")
        return {
            "invalid_name": f"{name!r} is not a variable name "
            "(names are looked up, never evaluated)",
            "not_found": f"no variable named {name!r}",
            "reserved": f"{name!r} belongs to IPython and cannot be changed",
            "too_large": f"{name!r} is {r.get('size')} bytes, over the limit for this format; "
            "fetch it with format=pickle, or raise max_variable_bytes",
            "not_json": f"{name!r} is not JSON-serializable: use format=repr or format=pickle",
            "not_picklable": f"{name!r} cannot be pickled",
            "unpickle_failed": "the value could not be unpickled in the kernel",
            "bad_payload": "the value is not valid base64",
            "invalid_format": "format must be one of json, repr, pickle",
        }.get(str(r.get("error")), f"variables request failed: {r.get('error')}")


class VariablesService(LoggingConfigurable):
    """Variables of the sessions of one ``KernelSessionManager``."""

    max_variable_bytes = Integer(
        1024 * 1024,
        config=True,
        help="Largest value returned as json or repr; larger ones need format=pickle.",
    )
    max_pickle_bytes = Integer(
        256 * 1024 * 1024, config=True, help="Largest pickled value moved in or out."
    )
    busy_timeout = Float(BUSY_ANSWER_TIMEOUT, config=True)

    def __init__(self, sessions: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sessions = sessions
        self._last: dict[str, dict[str, Any]] = {}  # kernel id -> last listing

    def _watcher(self, name: str) -> tuple[Any, Any]:
        model = self.sessions.model(name)
        if model.state in UNAVAILABLE_STATES:
            raise InvalidTransition(f"session {name!r} is {model.state}: {model.reason}")
        watcher = self.sessions.watcher(name)
        if watcher is None:
            raise InvalidTransition(f"session {name!r} has no running kernel")
        return model, watcher

    async def _call(
        self, name: str, func: str, *args: Any, hidden: bool = False, **kwargs: Any
    ) -> Any:
        await self.sessions.attach(name)  # wakes a hibernated session
        model, watcher = self._watcher(name)
        if model.state == M.UNRESPONSIVE:  # a read would only wait out CALL_TIMEOUT
            raise InvalidTransition(f"session {name!r} is {model.state}: {model.reason}")
        code = ns_call_code("inspector", func, *args, hidden=hidden, **kwargs)
        text = await watcher.evaluate(code, CALL_TIMEOUT)
        return ast.literal_eval(text)

    async def list(
        self, name: str, *, include_modules: bool = False, filter: str | None = None
    ) -> dict[str, Any]:
        """``{variables, count, truncated, stale, busy}``; never waits for a running cell."""
        await self.sessions.attach(name)
        model, watcher = self._watcher(name)
        kwargs = {"hidden": True, "include_modules": include_modules, "filter": filter}
        busy = model.state != M.IDLE
        key = f"{model.kernel_id}:{include_modules}:{filter}"
        timeout = self.busy_timeout if busy else CALL_TIMEOUT
        try:
            if busy and not await watcher.answers_while_busy(self.busy_timeout):
                raise TimeoutError("busy")
            try:  # structured: the listing is decoded once, with the reply message
                listing = await watcher.evaluate(
                    ns_call_code("inspector", "listing_result", **kwargs),
                    timeout,
                    concurrent=busy,
                    mime=LISTING_MIME,
                )
            except KeyError:  # the kernel's display formatter dropped application/json
                text = await watcher.evaluate(
                    ns_call_code("inspector", "listing_payload", **kwargs), timeout, concurrent=busy
                )
                listing = json.loads(ast.literal_eval(text))
            listing = _entries(listing)
        except TimeoutError:
            last = self._last.get(
                key, {"variables": [], "count": 0, "truncated": False, "listed_at": None}
            )
            return {**last, "stale": True, "busy": True}
        listing["listed_at"] = time.time()
        self._last[key] = listing
        return {**listing, "stale": False, "busy": busy}

    async def get(self, name: str, var: str, fmt: str = "json") -> dict[str, Any]:
        """The value of ``var``: ``value`` (json, repr) or ``data`` bytes (pickle)."""
        limit = self.max_pickle_bytes if fmt == "pickle" else self.max_variable_bytes
        result = await self._call(name, "get_value", var, fmt, limit)
        if result.get("error"):
            raise VariableError(result)
        if "data_b64" in result:
            result["data"] = base64.b64decode(result.pop("data_b64"))
        return result

    async def set(
        self, name: str, var: str, *, value: Any = None, pickled: bytes | None = None
    ) -> dict[str, Any]:
        """Bind ``var`` to a JSON value, or to dill bytes unpickled inside the kernel."""
        if pickled is not None:
            if len(pickled) > self.max_pickle_bytes:
                raise VariableError({"error": "too_large", "name": var, "size": len(pickled)})
            kwargs = {"pickle_b64": base64.b64encode(pickled).decode("ascii")}
        else:
            kwargs = {"json_value": value}
        result = await self._call(name, "set_value", var, **kwargs)
        if result.get("error"):
            raise VariableError(result)
        self.sessions.checkpointing.note_activity(self.sessions.model(name))
        return result

    async def delete(self, name: str, var: str) -> None:
        result = await self._call(name, "delete_value", var)
        if result.get("error"):
            raise VariableError(result)
        self.sessions.checkpointing.note_activity(self.sessions.model(name))

    # -- Python conveniences (dill on this side, so functions and classes travel) ---------

    async def push(self, name: str, **values: Any) -> None:
        import dill

        for var, value in values.items():
            await self.set(name, var, pickled=dill.dumps(value, recurse=True))

    async def pull(self, name: str, var: str) -> Any:
        import dill

        return dill.loads((await self.get(name, var, "pickle"))["data"])
