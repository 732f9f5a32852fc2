"""Variable inspection that runs inside the IPython kernel.

Shipped into the kernel as source and kept under a private ``sys.modules`` entry, so it imports
only the standard library; numpy/pandas/torch are used only when the user already imported them.
Anything that could run user code (``__repr__``, ``__len__``, ``__sizeof__``) is either a
known-safe builtin or runs in a watchdog thread with a time budget, so no object can break or
block a listing.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import functools
import gc
import itertools
import json
import keyword
import math
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

PREVIEW_CHARS = 200  # longest preview string
PREVIEW_ITEMS = 20  # container items rendered in a preview
PREVIEW_DEPTH = 3  # container nesting rendered in a preview (also stops cycles)
PREVIEW_COLUMNS = 10  # DataFrame column labels named in a preview
LABEL_CHARS = 40  # longest DataFrame column label in a preview
ARRAY_THRESHOLD = 20  # numpy summarisation threshold for previews
ARRAY_EDGE_ITEMS = 3  # numpy edge items per axis for 1-D/2-D previews (1 above 2-D)
ARRAY_MAX_NDIM_EDGE = 6  # above this ndim, (2*edge)**ndim is too many: preview flat items
INT_PREVIEW_BITS = 4000  # larger ints are summarised (their repr is slow or refused)
ERROR_CHARS = 160  # longest error reason
PER_OBJECT_BUDGET_S = 0.05  # time one untrusted object may take to describe
LIST_BUDGET_S = 1.0  # total time untrusted objects may take in one listing
REPR_VALUE_BUDGET_S = 5.0  # time get_value(fmt="repr") may spend in user code
WATCHDOG_POLL_S = 0.01  # how often the watchdog looks at the worker
MAX_ABANDONED_THREADS = 8  # hung worker threads tolerated before untrusted objects are skipped
HUNG_CACHE_SIZE = 256  # objects remembered as hanging
MAX_FRAME_COLUMNS_FOR_MEMORY = 1000  # wider frames get size rows*cols*8
LIST_LIMIT = 10_000  # entries in one listing payload
IMMUTABLE_CACHE_SIZE = 10_000  # immutable values whose description is kept for the next listing
IMMUTABLE_CACHE_BYTES = 1024  # larger ones are not kept alive by that cache
REPR_DEPTH = 20  # nesting rendered by get_value(fmt="repr")

IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "_ih", "_oh", "_dh"})
FORMATS = ("json", "repr", "pickle")
THREAD_NAME = "kernel-sessions-inspector"

_SCALARS = frozenset(
    {
        int,
        float,
        complex,
        bool,
        type(None),
        str,
        bytes,
        bytearray,
        range,
        type(...),
        type(NotImplemented),
    }
)
_IMMUTABLE = frozenset({str, bytes, int, float, complex})  # description depends on value only
_FAST_ITEMS = frozenset({int, float, bool, type(None)})  # items whose repr is cheap and safe
_FAST_INT = 1 << 64
_SIZED = frozenset({str, bytes, bytearray})  # not range: len() overflows past sys.maxsize
_CONTAINERS = (dict, list, tuple, set, frozenset)
_BRACKETS = {
    dict: ("{", "}"),
    list: ("[", "]"),
    tuple: ("(", ")"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}
_EMPTY = {dict: "{}", list: "[]", tuple: "()", set: "set()", frozenset: "frozenset()"}
_FUNCTION_TYPES = frozenset(
    {
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.WrapperDescriptorType,
        types.MethodWrapperType,
        types.MethodDescriptorType,
        types.ClassMethodDescriptorType,
        functools.partial,
    }
)
_FUNCTION_TYPE_NAMES = frozenset(
    {"ufunc", "_ArrayFunctionDispatcher", "cython_function_or_method", "fused_cython_function"}
)
_DATA_ROOTS = frozenset({"numpy", "pandas", "torch"})
_UNSET: Any = object()
_TIMEOUT, _SKIPPED = "timeout", "skipped"

Fields = tuple  # (size, shape, len, dtype, preview) of one variable

_LOCK = threading.Lock()
_stuck_threads = 0  # abandoned worker threads still inside user code
_hung: dict[tuple[int, int], tuple[bool, Any]] = {}  # (id, id(type)) -> (is_weakref, ref)
# id -> (value, fields) of the small immutable values seen by the last listing; the value is
# held, so its id cannot be reused by another object while the entry exists
_immutables: dict[int, tuple[Any, Fields]] = {}


# ------------------------------------------------------------------------------- type facts
def _static(t: type, name: str) -> tuple[type | None, Any]:
    """(defining class, attribute) read from the MRO dicts, so no descriptor or hook runs."""
    try:
        for klass in type.__getattribute__(t, "__mro__"):
            d = type.__getattribute__(klass, "__dict__")
            if name in d:
                return klass, d[name]
    except Exception:
        pass
    return None, None


def _type_attr(t: Any, name: str, default: str = "?") -> str:
    try:
        value = type.__getattribute__(t, name)
        return value if type(value) is str else default
    except Exception:
        return default


def _wire(text: str) -> str:
    """``text`` with lone surrogates escaped: a listing travels as UTF-8 in the reply message."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _type_name(t: type) -> str:
    """``module.QualName``; builtins unprefixed."""
    module, qual = _type_attr(t, "__module__", ""), _type_attr(t, "__qualname__")
    return _wire(qual if module in ("", "builtins") else f"{module}.{qual}")


def _container_base(t: type) -> type | None:
    """Builtin container base whose item-wise rendering stands in for t's repr, if any."""
    for base in _CONTAINERS:
        if issubclass(t, base):
            owner = _static(t, "__repr__")[0]
            ok = owner is base or _type_attr(owner, "__module__", "") == "collections"
            return base if ok else None
    return None


def _mod_attr(module: str, name: str) -> Any:
    """A class of an already-imported module, or () so issubclass() is simply False."""
    mod = sys.modules.get(module)
    return getattr(mod, name, ()) if mod is not None else ()


class _TypeInfo:
    """Per-type facts, computed once per listing.

    ``inline``: True = describing runs no user code; False = needs the watchdog;
    None = depends on the value (container items, object dtype).
    """

    __slots__ = ("name", "kind", "handler", "inline", "base", "has_len")

    def __init__(
        self,
        name: str,
        kind: str,
        handler: str,
        inline: bool | None,
        base: type | None = None,
        has_len: bool = False,
    ) -> None:
        self.name, self.kind, self.handler, self.inline = name, kind, handler, inline
        self.base, self.has_len = base, has_len


def _classify(t: type) -> _TypeInfo:
    name = _type_name(t)
    if t in _SCALARS:
        return _TypeInfo(name, "data", "scalar", True)
    if t in _CONTAINERS:
        return _TypeInfo(name, "data", "container", None, base=t)
    ndarray = _mod_attr("numpy", "ndarray")
    if issubclass(t, ndarray):
        return _TypeInfo(name, "data", "ndarray", None if t is ndarray else False)
    if issubclass(t, _mod_attr("numpy", "generic")):
        return _TypeInfo(name, "data", "npscalar", name.startswith("numpy."))
    for cls_name, handler in (("DataFrame", "frame"), ("Series", "series"), ("Index", "index")):
        cls = _mod_attr("pandas", cls_name)
        if issubclass(t, cls):  # subclasses may override anything: watchdog
            inline = (handler == "frame" or None) if t is cls else False
            return _TypeInfo(name, "data", handler, inline)
    if issubclass(t, _mod_attr("torch", "Tensor")):  # repr may sync a GPU: watchdog
        return _TypeInfo(name, "data", "tensor", False)
    if issubclass(t, types.ModuleType):
        return _TypeInfo(name, "module", "module", True)
    if issubclass(t, type):
        safe = _static(t, "__repr__")[0] is type and _static(t, "__sizeof__")[0] in (type, object)
        return _TypeInfo(name, "class", "class", safe)
    if t in _FUNCTION_TYPES or _type_attr(t, "__name__") in _FUNCTION_TYPE_NAMES:
        return _TypeInfo(name, "function", "function", True)
    if issubclass(t, functools.partial):
        return _TypeInfo(name, "function", "function", False)
    data = issubclass(t, tuple(_SCALARS) + _CONTAINERS) or name.partition(".")[0] in _DATA_ROOTS
    kind, base = "data" if data else "instance", _container_base(t)
    if base is not None:
        return _TypeInfo(name, kind, "container", False, base=base)
    has_len = _static(t, "__len__")[1] is not None
    safe = _static(t, "__repr__")[0] is object and _static(t, "__sizeof__")[0] is object
    return _TypeInfo(name, kind, "generic", safe and not has_len, has_len=has_len)


def _plain_meta(t: type) -> bool:
    """True if hashing or comparing the type ``t`` runs no user code: its metaclass is
    ``type``, or one that keeps ``type``'s own ``__hash__`` and ``__eq__``. Checked before ``t``
    meets any set or dict (``t in _SCALARS`` would call a metaclass's ``__hash__``)."""
    meta = type(t)
    return meta is type or (
        type(meta) is type and meta.__hash__ is type.__hash__ and meta.__eq__ is type.__eq__
    )


def _safe_inline(obj: Any, depth: int = 0) -> bool:
    """True if _preview(obj) runs no user code (checks what it renders, not more)."""
    t = type(obj)
    if not _plain_meta(t):
        return False
    if t in _SCALARS:
        return True
    if t in _CONTAINERS:
        if depth >= PREVIEW_DEPTH:
            return True  # rendered as "[…]"
        items = itertools.islice(dict.items(obj) if t is dict else t.__iter__(obj), PREVIEW_ITEMS)
        head = list(itertools.chain.from_iterable(items) if t is dict else items)
        if set(map(type, map(type, head))) <= {type} and set(map(type, head)) <= _SCALARS:
            return True  # the common case, checked at C speed
        return all(_safe_inline(item, depth + 1) for item in head)
    return issubclass(t, _mod_attr("numpy", "generic")) and _type_name(t).startswith("numpy.")


def _inline_ok(obj: Any, info: _TypeInfo) -> bool:
    if info.inline is not None:
        return info.inline
    try:
        if info.handler == "container":
            return _safe_inline(obj)
        dtype = obj.dtype
        if info.handler == "ndarray":
            return not dtype.hasobject
        return getattr(dtype, "kind", "O") != "O" or str(dtype) in ("str", "string")
    except Exception:
        return False


# --------------------------------------------------------------------------------- previews
def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _exc_name(exc: BaseException) -> str:
    return _type_attr(type(exc), "__name__", "Exception")


def _repr(obj: Any) -> str:
    text = repr(obj)
    return text if type(text) is str else str.__str__(text)  # drop str-subclass tricks


class _Untrusted(Exception):
    """A strict preview met an item whose rendering could run user code."""


def _numpy_scalar(t: type) -> bool:
    """numpy's own scalar types, whose repr is numpy's (not a user subclass's)."""
    return issubclass(t, _mod_attr("numpy", "generic")) and _type_name(t).startswith("numpy.")


def _preview(
    obj: Any,
    limit: int = PREVIEW_CHARS,
    depth: int = 0,
    max_items: int = PREVIEW_ITEMS,
    max_depth: int = PREVIEW_DEPTH,
    strict: bool = False,
) -> str:
    """A repr built item by item, so a huge container costs O(max_items), not O(len).

    ``strict``: raise _Untrusted instead of rendering anything that could run user code, so
    the check and the rendering are one walk over the items that are shown.
    """
    t = type(obj)
    if not _plain_meta(t):
        if strict:
            raise _Untrusted
        return _clip(_repr(obj), limit)
    if t in _SCALARS:
        if t is str or t is bytes or t is bytearray:
            return _clip(repr(obj[: limit + 1]), limit)
        if t is int and obj.bit_length() > INT_PREVIEW_BITS:
            return f"<int with ~{int(obj.bit_length() * math.log10(2)) + 1} digits>"
        return _clip(repr(obj), limit)
    if t in _CONTAINERS:
        base: type | None = t
    elif strict:
        if not _numpy_scalar(t):
            raise _Untrusted
        base = None
    else:
        base = _container_base(t)
    if base is None:
        return _clip(_repr(obj), limit)
    opener, closer = _BRACKETS[base]
    total = base.__len__(obj)
    if t is list or t is tuple:  # fast path: plain numbers render at C speed
        head = obj[:max_items]
        if _plain_numbers(head):
            text = repr(head)  # the same text as item by item, as no item can be clipped
            if len(head) < total:
                text = text[:-1] + (", …" if head else "…") + closer
            return _clip(text, limit)
    if total == 0 or depth >= max_depth:
        text = _EMPTY[base] if total == 0 else f"{opener}…{closer}"
    else:
        parts: list[str] = []
        used = len(opener) + len(closer)
        depth += 1
        if base is dict:
            for key, value in itertools.islice(dict.items(obj), max_items):
                if used >= limit:
                    break
                key = _preview(key, limit - used, depth, max_items, max_depth, strict)
                part = (
                    key
                    + ": "
                    + _preview(
                        value,
                        max(limit - used - len(key) - 2, 1),
                        depth,
                        max_items,
                        max_depth,
                        strict,
                    )
                )
                parts.append(part)
                used += len(part) + 2
        else:
            for item in itertools.islice(base.__iter__(obj), max_items):
                if used >= limit:
                    break
                part = _preview(item, limit - used, depth, max_items, max_depth, strict)
                parts.append(part)
                used += len(part) + 2
        body = ", ".join(parts)
        if len(parts) < total:
            body += ", …" if parts else "…"
        text = opener + body + ("," if base is tuple and total == 1 else "") + closer
    if t is not base:
        text = f"{_type_attr(t, '__name__')}({text})"
    return _clip(text, limit)


def _plain_numbers(head: list | tuple) -> bool:
    """True if every item is a number (or None) whose repr is short, checked at C speed."""
    if not set(map(type, map(type, head))) <= {type}:  # hashing their types is safe
        return False
    kinds = set(map(type, head))
    if not kinds <= _FAST_ITEMS:
        return False
    if int not in kinds:
        return True
    if type(None) in kinds:
        return all(-_FAST_INT < x < _FAST_INT for x in head if type(x) is int)
    return -_FAST_INT < min(head) and max(head) < _FAST_INT


def _callable_name(func: Any) -> str:
    if type(func) in (types.FunctionType, types.BuiltinFunctionType):
        return func.__qualname__
    return f"<{_type_name(type(func))}>"


def _array_preview(a: Any, kind: str | None = None) -> str:
    """A corner of the array as nested lists: array2string costs ~0.3 ms even for 3 items."""
    np = sys.modules["numpy"]
    ndim = a.ndim
    if (a.dtype.kind if kind is None else kind) in "biuf" and ndim <= ARRAY_MAX_NDIM_EDGE:
        if ndim == 0:
            return _clip(repr(a.item()))
        corner = (a[:PREVIEW_ITEMS] if ndim == 1 else a[(slice(0, PREVIEW_ITEMS),) * ndim]).tolist()
        text = _preview(corner)
        return _clip(text if a.size <= PREVIEW_ITEMS else text.rstrip("]") + ", …]")
    if ndim > ARRAY_MAX_NDIM_EDGE:
        head = np.array2string(a.flat[:PREVIEW_ITEMS], threshold=ARRAY_THRESHOLD)
        return _clip(f"flat {' '.join(head.split())}…")
    edge = ARRAY_EDGE_ITEMS if ndim <= 2 else 1
    return _clip(" ".join(np.array2string(a, threshold=ARRAY_THRESHOLD, edgeitems=edge).split()))


def _frame_label(label: Any) -> str:
    if type(label) is str:
        return _clip(label, LABEL_CHARS)
    return _preview(label, LABEL_CHARS) if _safe_inline(label) else f"<{_type_name(type(label))}>"


def _head_preview(obj: Any, handler: str, n: int) -> str:
    head = (obj.iloc if handler == "series" else obj)[:PREVIEW_ITEMS].tolist()
    text = _preview(head)
    return text[:-1] + ", …]" if n > len(head) and text.endswith("]") else text


def _module_preview(module: Any) -> str:
    d = object.__getattribute__(module, "__dict__")
    name, file = d.get("__name__"), d.get("__file__")
    return _clip(f"<module {name!r}" + (f" from {file!r}>" if type(file) is str else ">"))


def _steps(obj: Any, info: _TypeInfo) -> dict[str, Callable[[], Any]]:
    """Per-field thunks, so one failing field (say ``__len__``) degrades only itself."""
    h, t = info.handler, type(obj)
    if h in ("ndarray", "npscalar"):
        steps = {
            "size": lambda: int(obj.nbytes),
            "dtype": lambda: str(obj.dtype),
            "preview": lambda: _clip(_repr(obj)),
        }
        if h == "ndarray":
            steps.update(
                shape=lambda: [int(d) for d in obj.shape],
                len=lambda: int(obj.shape[0]) if obj.ndim else None,
                preview=lambda: _array_preview(obj),
            )
        return steps
    if h == "frame":
        rows, cols = (int(d) for d in obj.shape)

        def labels() -> str:
            return ", ".join(_frame_label(c) for c in obj.columns[:PREVIEW_COLUMNS].tolist())

        title = f"{_type_attr(t, '__name__')} {rows}×{cols}"
        more = "…" if cols > PREVIEW_COLUMNS else ""
        return {
            "shape": lambda: [rows, cols],
            "len": lambda: rows,
            "size": lambda: (
                int(obj.memory_usage(index=True, deep=False).sum())
                if cols <= MAX_FRAME_COLUMNS_FOR_MEMORY
                else rows * cols * 8
            ),
            "preview": lambda: _clip(f"{title}: {labels()}{more}"),
        }
    if h in ("series", "index"):
        n = int(len(obj))
        return {
            "shape": lambda: [n],
            "len": lambda: n,
            "dtype": lambda: str(obj.dtype),
            "size": lambda: int(obj.memory_usage(deep=False)),
            "preview": lambda: _clip(
                f"{_type_attr(t, '__name__')} {n} {obj.dtype}: {_head_preview(obj, h, n)}"
            ),
        }
    if h == "tensor":
        return {
            "shape": lambda: [int(d) for d in obj.shape],
            "dtype": lambda: str(obj.dtype),
            "len": lambda: int(obj.shape[0]) if obj.dim() else None,
            "size": lambda: int(obj.element_size()) * int(obj.nelement()),
            "preview": lambda: _clip(" ".join(_repr(obj).split())),
        }
    steps = {"size": lambda: int(sys.getsizeof(obj)), "preview": lambda: _clip(_repr(obj))}
    if h == "module":
        steps["preview"] = lambda: _module_preview(obj)
    elif t is types.MethodType:  # its repr would call repr(__self__)
        text = f"<bound method {_callable_name(obj.__func__)} of {_type_name(type(obj.__self__))}>"
        steps["preview"] = lambda: _clip(text)
    elif h == "function" and issubclass(t, functools.partial):  # its repr shows the args
        steps["preview"] = lambda: _clip(f"functools.partial({_callable_name(obj.func)}, …)")
    elif h == "container":
        steps.update(preview=lambda: _preview(obj), len=lambda: info.base.__len__(obj))
    elif info.has_len:
        steps["len"] = lambda: int(len(obj))
    return steps


DtypeFacts = tuple  # (dtype, name, kind, hasobject)


def _dtype_facts(dtype: Any, dtypes: dict[int, DtypeFacts]) -> DtypeFacts:
    """(dtype, name, kind, hasobject), once per dtype object per listing (``str(dtype)`` is slow).

    Keyed by id and checked by identity; ``dtypes`` holds the dtype, so its id stays its own.
    """
    facts = dtypes.get(id(dtype))
    if facts is None or facts[0] is not dtype:
        facts = dtypes[id(dtype)] = (dtype, _wire(str(dtype)), dtype.kind, bool(dtype.hasobject))
    return facts


def _describe_inline(
    obj: Any, info: _TypeInfo, dtypes: dict[int, DtypeFacts]
) -> Fields | None | bool:
    """Fields of a builtin scalar, a builtin container of trusted items or a plain ndarray.

    One pass that runs no user code. False: a shown item could run user code (use the
    watchdog); None: not a case handled here (use the general path).
    """
    t = type(obj)
    if t in _SCALARS:
        return sys.getsizeof(obj), None, len(obj) if t in _SIZED else None, None, _preview(obj)
    try:
        if info.handler == "container" and t is info.base:
            return (sys.getsizeof(obj), None, t.__len__(obj), None, _preview(obj, strict=True))
        if info.handler == "ndarray" and info.inline is None:  # exactly numpy.ndarray
            _, dtype, kind, hasobject = _dtype_facts(obj.dtype, dtypes)
            if hasobject:
                return False
            shape = list(obj.shape)
            return (
                obj.nbytes,
                shape,
                shape[0] if shape else None,
                dtype,
                _array_preview(obj, kind),
            )
    except _Untrusted:
        return False
    except Exception:  # odd but trusted: the general path reports it field by field
        return None
    return None


def _describe(obj: Any, info: _TypeInfo) -> dict[str, Any]:
    """size/shape/len/dtype/preview/error; may run user code, so callers guard it."""
    t = type(obj)
    if _plain_meta(t) and t in _SCALARS:  # fast path for most variables; nothing can fail
        return {
            "size": sys.getsizeof(obj),
            "shape": None,
            "len": len(obj) if t in _SIZED else None,
            "dtype": None,
            "preview": _preview(obj),
            "error": None,
        }
    out: dict[str, Any] = dict.fromkeys(("size", "shape", "len", "dtype", "preview", "error"))
    out["preview"], errors = "", []
    try:
        steps = _steps(obj, info)
    except Exception as exc:
        steps, errors = {}, [f"repr failed: {_exc_name(exc)}"]
        out["preview"] = f"<{errors[0]}>"
    for key, step in steps.items():
        try:
            out[key] = step()
        except Exception as exc:
            errors.append(f"{'repr' if key == 'preview' else key} failed: {_exc_name(exc)}")
            if key == "preview":
                out[key] = f"<{errors[-1]}>"
    if errors:
        out["error"] = _clip("; ".join(errors), ERROR_CHARS)
    for key in ("dtype", "preview", "error"):  # user code may have produced any string
        if type(out[key]) is str:
            out[key] = _wire(out[key])
    return out


# --------------------------------------------------------------------------------- watchdog
def _remember_hung(obj: Any) -> None:
    try:
        entry: tuple[bool, Any] = (True, weakref.ref(obj))
    except TypeError:
        entry = (False, obj)  # a strong ref keeps the id from being reused
    with _LOCK:
        _hung[(id(obj), id(type(obj)))] = entry
        while len(_hung) > HUNG_CACHE_SIZE:
            del _hung[next(iter(_hung))]


def _known_hung(obj: Any) -> bool:
    entry = _hung.get((id(obj), id(type(obj))))
    return entry is not None and (entry[1]() if entry[0] else entry[1]) is obj


class _Batch:
    """Items processed in order by one worker thread, which the caller may abandon."""

    def __init__(self, items: list[Any], fn: Callable[[Any], Any]) -> None:
        self.items, self.fn = items, fn
        self.results: dict[int, tuple[bool, Any]] = {}
        self.current: tuple[int, float] | None = None
        self.abandoned = self.finished = False
        self.done = threading.Event()

    def run(self) -> None:
        global _stuck_threads
        try:
            for i, item in enumerate(self.items):
                with _LOCK:
                    if self.abandoned:
                        break
                    self.current = (i, time.monotonic())
                try:
                    result: tuple[bool, Any] = (True, self.fn(item))
                except BaseException as exc:  # SystemExit from user code must not escape
                    result = (False, _exc_name(exc))
                with _LOCK:
                    self.results[i] = result
        finally:
            with _LOCK:
                self.finished = True
                _stuck_threads -= self.abandoned
            self.done.set()


def _run_guarded(
    items: list[Any],
    fn: Callable[[Any], Any],
    per_item: float,
    total: float,
    subject: Callable[[Any], Any],
) -> list[Any]:
    """fn over items in a worker thread: each result is (ok, value), _TIMEOUT or _SKIPPED.

    A thread cannot be stopped, so one stuck longer than ``per_item`` is abandoned (daemon),
    ``subject(item)`` is remembered as hung and the rest go to a fresh worker. Past ``total``
    or MAX_ABANDONED_THREADS stuck threads, the remaining items are skipped.
    """
    global _stuck_threads
    out: list[Any] = [_SKIPPED] * len(items)
    deadline, start = time.monotonic() + total, 0
    while start < len(items) and time.monotonic() < deadline:
        if _stuck_threads >= MAX_ABANDONED_THREADS:
            break
        batch = _Batch(items[start:], fn)
        try:
            threading.Thread(target=batch.run, name=THREAD_NAME, daemon=True).start()
        except RuntimeError:  # can't start new thread
            break
        hung, timed_out = None, False
        while not batch.done.wait(WATCHDOG_POLL_S):
            now = time.monotonic()
            with _LOCK:
                if batch.finished or batch.current is None:
                    continue
                index, began = batch.current
                timed_out = now - began >= per_item
                if timed_out or now >= deadline:
                    batch.abandoned, hung = True, index
                    _stuck_threads += 1
                    break
        with _LOCK:
            results = dict(batch.results)
        for i, result in results.items():
            if hung is None or i < hung:
                out[start + i] = result
        if hung is None:
            break
        if timed_out:
            out[start + hung] = _TIMEOUT
            _remember_hung(subject(items[start + hung]))
        start += hung + 1
    return out


# ---------------------------------------------------------------------------------- listing
@contextlib.contextmanager
def gc_paused() -> Any:
    """The cyclic garbage collector off for a burst of short-lived, acyclic allocations.

    A listing of 10k variables makes ~100k containers; the collections they trigger would each
    walk the whole heap (the user's data in a kernel, the server's in jupyter_server), which
    made listings twice as slow and their times erratic. Nothing made here is cyclic, so
    nothing is missed; counting goes on, and collection resumes as soon as the burst ends.
    """
    if not gc.isenabled():  # someone else's choice: leave it alone
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _visible(name: Any, value: Any, hidden: Mapping[str, Any] | None) -> bool:
    if type(name) is not str or name.startswith("_") or name in IPYTHON_NAMES:
        return False
    if hidden is not None and name in hidden and hidden[name] is value:
        return False  # e.g. IPython's user_ns_hidden, while still bound to IPython's object
    return not (
        name == "open"
        and type(value) is types.FunctionType  # IPython's wrapped io.open
        and "IPython" in value.__code__.co_filename
    )


def _select(
    ns: Mapping[str, Any],
    include_modules: bool,
    pattern: str | None,
    hidden: Mapping[str, Any] | None,
) -> list[tuple[str, Any]]:
    pattern = (pattern or "").lower()
    glob = any(c in pattern for c in "*?[")
    chosen = [
        (name, value)
        for name, value in list(ns.items())
        if _visible(name, value, hidden)
        and (include_modules or not issubclass(type(value), types.ModuleType))
        and (
            not pattern
            or (fnmatch.fnmatchcase(name.lower(), pattern) if glob else pattern in name.lower())
        )
    ]
    chosen.sort(key=lambda pair: pair[0])
    return chosen


def _placeholder(result: Any) -> dict[str, Any]:
    if result == _TIMEOUT:
        preview, error = "<repr timed out>", "repr timed out"
    elif result == _SKIPPED:
        preview, error = "<repr skipped>", "repr skipped: time budget or hung-thread cap reached"
    else:
        preview, error = f"<repr failed: {result[1]}>", f"repr failed: {result[1]}"
    return {
        "size": None,
        "shape": None,
        "len": None,
        "dtype": None,
        "preview": preview,
        "error": error,
    }


def _guarded_info(obj: Any) -> _TypeInfo:
    """Type facts of an object whose type is unsafe to hash: generic, worked out without
    ``_classify`` (whose set lookups would run the metaclass's ``__hash__``)."""
    return _TypeInfo(_raw_type_name(type(obj)), "instance", "generic", False)


def _raw_type_name(t: type) -> str:
    """``module.qualname`` of ``t`` read from the type's own slots: no metaclass code runs."""
    try:
        qual = type.__dict__["__qualname__"].__get__(t, type)
        mod = type.__dict__["__module__"].__get__(t, type)
    except Exception:
        return "?"
    qual = qual if isinstance(qual, str) else "?"
    return qual if mod in (None, "builtins") or not isinstance(mod, str) else f"{mod}.{qual}"


FIELDS = ("name", "type", "kind", "size", "shape", "len", "dtype", "preview", "error")
_DETAILS = FIELDS[3:]  # what _describe and _placeholder fill in


def _describe_all(pairs: list[tuple[str, Any]]) -> list[list[Any]]:
    """Rows (in ``FIELDS`` order) for ``pairs``: inline where nothing can run user code, else
    in the watchdog.

    Rows, not dicts: a listing of 10k variables is encoded by the kernel's message packer and
    decoded by the server, and without the repeated keys that costs about half as much.
    Small immutable values (``_IMMUTABLE``) are described once and reused by later listings
    while the same object is bound; the cache is replaced by what this listing saw.
    """
    global _immutables
    infos: dict[type, _TypeInfo] = {}
    dtypes: dict[int, DtypeFacts] = {}
    cached, seen = _immutables, {}
    rows: list[list[Any]] = []
    pending: list[tuple[list[Any], Any, _TypeInfo | None]] = []
    for name, obj in pairs:
        name = name if name.isascii() else _wire(name)
        t = type(obj)
        if not _plain_meta(t):  # even looking its type up could run user code: watchdog
            row = [name, _wire(_raw_type_name(t)), "instance"]
            pending.append((row, obj, None))
            rows.append(row)
            continue
        info = infos.get(t)
        if info is None:
            try:
                info = _classify(t)
            except Exception:
                info = _TypeInfo(_type_name(t), "instance", "generic", False)
            infos[t] = info
        if t in _IMMUTABLE:
            hit = cached.get(id(obj))
            if hit is not None and hit[0] is obj:
                fields = hit[1]
            else:
                fields = _describe_inline(obj, info, dtypes)
                hit = (obj, fields) if fields[0] <= IMMUTABLE_CACHE_BYTES else None
            if hit is not None and len(seen) < IMMUTABLE_CACHE_SIZE:
                seen[id(obj)] = hit
        else:
            fields = _describe_inline(obj, info, dtypes)
        if fields:
            rows.append([name, info.name, info.kind, *fields, None])
            continue
        row = [name, info.name, info.kind]
        if fields is None and _inline_ok(obj, info):
            row += _details(_describe(obj, info))
        elif _known_hung(obj):
            row += _details(_placeholder(_TIMEOUT))
        else:
            pending.append((row, obj, info))
        rows.append(row)
    if pending:
        results = _run_guarded(
            [(obj, info) for _, obj, info in pending],
            lambda pair: _describe(pair[0], pair[1] or _guarded_info(pair[0])),
            PER_OBJECT_BUDGET_S,
            LIST_BUDGET_S,
            subject=lambda pair: pair[0],
        )
        for (row, _, _), result in zip(pending, results):
            ok = isinstance(result, tuple) and result[0]
            row += _details(result[1] if ok else _placeholder(result))
    _immutables = seen
    return rows


def _details(described: Mapping[str, Any]) -> list[Any]:
    return [described.get(field) for field in _DETAILS]


def list_variables(
    ns: Mapping[str, Any],
    *,
    include_modules: bool = False,
    filter: str | None = None,
    hidden: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """User variables of ``ns`` sorted by name; no value can make this raise or hang.

    ``filter``: case-insensitive substring, or a glob if it contains ``*?[``. ``hidden``
    (e.g. IPython's ``user_ns_hidden``) hides names still bound to the same object.
    ``limit`` caps how many entries are described.
    """
    pairs = _select(ns, include_modules, filter, hidden)
    return [
        dict(zip(FIELDS, row)) for row in _describe_all(pairs if limit is None else pairs[:limit])
    ]


def _listing(
    ns: Mapping[str, Any],
    include_modules: bool,
    filter: str | None,
    hidden: Mapping[str, Any] | None,
    limit: int,
) -> dict[str, Any]:
    """``{"fields", "rows", "count", "truncated"}``: ``count`` is before truncation."""
    with gc_paused():
        pairs = _select(ns, include_modules, filter, hidden)
        rows = _describe_all(pairs[:limit])
    return {
        "fields": list(FIELDS),
        "rows": rows,
        "count": len(pairs),
        "truncated": len(pairs) > limit,
    }


def listing_payload(
    ns: Mapping[str, Any],
    *,
    include_modules: bool = False,
    filter: str | None = None,
    hidden: Mapping[str, Any] | None = None,
    limit: int = LIST_LIMIT,
) -> str:
    """:func:`_listing` as JSON text (for kernels whose formatter drops ``application/json``)."""
    return json.dumps(
        _listing(ns, include_modules, filter, hidden, limit),
        separators=(",", ":"),
        check_circular=False,
    )


class JSONResult:
    """A JSON value that IPython's display formatter hands over as ``application/json``.

    As the result of a ``user_expressions`` request it travels inside the reply message, so
    it is encoded and decoded once, not dumped to text, repr'd, and parsed twice on the host.
    Every string in it must be encodable as UTF-8 (see ``_wire``).
    """

    __slots__ = ("value",)
    MIME = "application/json"

    def __init__(self, value: Any) -> None:
        self.value = value

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {self.MIME: self.value, "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def listing_result(
    ns: Mapping[str, Any],
    *,
    include_modules: bool = False,
    filter: str | None = None,
    hidden: Mapping[str, Any] | None = None,
    limit: int = LIST_LIMIT,
) -> JSONResult:
    """The listing of :func:`listing_payload`, as a structured ``application/json`` result."""
    return JSONResult(_listing(ns, include_modules, filter, hidden, limit))


# ------------------------------------------------------------------- get / set / delete
def _name_error(
    name: Any, ns: Mapping[str, Any] | None = None, settable: bool = False
) -> str | None:
    if type(name) is not str or not name.isidentifier() or keyword.iskeyword(name):
        return "invalid_name"
    if settable and (name.startswith("_") or name in IPYTHON_NAMES):
        return "reserved"
    return "not_found" if ns is not None and name not in ns else None


def _is(obj: Any, module: str, *names: str) -> bool:
    return issubclass(type(obj), tuple(_mod_attr(module, n) for n in names))


def _json_lower_bound(obj: Any) -> int | None:
    """A cheap lower bound of the JSON/repr size: every value takes >= 1 char plus ", "."""
    t = type(obj)
    if t is str:
        return len(obj) + 2
    if t in _CONTAINERS:
        return (6 if t is dict else 3) * len(obj)
    if _is(obj, "numpy", "ndarray"):
        return 3 * int(obj.size)
    if _is(obj, "pandas", "Series", "Index"):
        return 3 * len(obj)
    if _is(obj, "pandas", "DataFrame") and obj.columns.is_unique:  # else to_dict drops keys
        labels = obj.columns[:MAX_FRAME_COLUMNS_FOR_MEMORY].tolist()
        return int(obj.shape[0]) * sum(len(c) + 5 if type(c) is str else 6 for c in labels)
    return None


def _pickle_lower_bound(obj: Any) -> int | None:
    """Raw buffers are pickled whole; object data is not a bound (shared refs shrink it)."""
    if type(obj) in (str, bytes, bytearray):
        return len(obj)
    if _is(obj, "numpy", "ndarray"):
        return None if obj.dtype.hasobject else int(obj.nbytes)
    if _is(obj, "pandas", "DataFrame", "Series"):
        dtypes = list(obj.dtypes) if _is(obj, "pandas", "DataFrame") else [obj.dtype]
        return len(obj) * sum(d.itemsize for d in dtypes if getattr(d, "hasobject", True) is False)
    return None


def _to_jsonable(obj: Any) -> Any:
    if _is(obj, "numpy", "ndarray", "generic") or _is(obj, "pandas", "Series", "Index"):
        return obj.tolist()
    return obj.to_dict(orient="records") if _is(obj, "pandas", "DataFrame") else obj


def _finite(value: Any) -> Any:
    """NaN/Infinity are not JSON: send null, as pandas' missing values usually mean."""
    t = type(value)
    if t is float:
        return value if math.isfinite(value) else None
    if t is list or t is tuple:
        return [_finite(v) for v in value]
    return {k: _finite(v) for k, v in value.items()} if t is dict else value


def _pickler() -> Any:
    """dill (in the kernel's environment), imported only when used; plain pickle otherwise."""
    try:
        import dill as pickler  # noqa: PLC0415
    except ImportError:
        import pickle as pickler  # noqa: PLC0415
    return pickler


def _encode_json(obj: Any, max_bytes: int) -> dict[str, Any]:
    try:
        value = _to_jsonable(obj)
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:
            value = _finite(value)
            text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"error": "not_json", "detail": _exc_name(exc)}
    if len(text) > max_bytes:  # ensure_ascii, so characters are bytes
        return {"error": "too_large", "size": len(text)}
    # the decoded text, not ``value``: the reply's repr is made by the kernel's display
    # formatter, which would call a list subclass's __len__ or __repr__ (user code that may
    # raise or never return); the decoded copy holds builtins only
    return {"value": json.loads(text), "size": len(text)}


def _encode_repr(obj: Any, max_bytes: int) -> dict[str, Any]:
    def render(value: Any) -> str:
        if type(value) in _SCALARS or _container_base(type(value)) is not None:
            return _preview(value, max_bytes + 1, 0, sys.maxsize, REPR_DEPTH)
        return _repr(value)

    if type(obj) in _SCALARS:
        result: Any = (True, render(obj))
    elif _known_hung(obj):
        result = _TIMEOUT
    else:
        result = _run_guarded(
            [obj], render, REPR_VALUE_BUDGET_S, REPR_VALUE_BUDGET_S, subject=lambda item: item
        )[0]
    if not isinstance(result, tuple):
        return {"error": "timeout" if result == _TIMEOUT else "skipped"}
    if not result[0]:
        return {"error": "repr_failed", "detail": result[1]}
    size = len(result[1].encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return {"error": "too_large", "size": size}
    return {"value": result[1], "size": size}


def _encode_pickle(obj: Any, max_bytes: int) -> dict[str, Any]:
    try:
        raw = _pickler().dumps(obj)
    except Exception as exc:
        return {"error": "not_picklable", "detail": _exc_name(exc)}
    if len(raw) > max_bytes:
        return {"error": "too_large", "size": len(raw)}
    return {"data_b64": base64.b64encode(raw).decode("ascii"), "size": len(raw)}


def get_value(ns: Mapping[str, Any], name: str, fmt: str, max_bytes: int) -> dict[str, Any]:
    """``{"name", "format", "value" | "data_b64", "size"}``, or with ``"error"`` instead.

    ``name`` is looked up with ``ns[name]``, never evaluated. ``size`` counts the encoded
    payload's bytes (pickle: before base64); a too-large payload is refused by a cheap lower
    bound before it is built where one exists (``"estimated": True``).
    """
    out: dict[str, Any] = {"name": name if type(name) is str else None, "format": fmt, "size": None}
    reason = _name_error(name, ns) or (None if fmt in FORMATS else "invalid_format")
    if reason:
        return {**out, "error": reason}
    obj = ns[name]
    try:
        if fmt == "pickle":
            estimate = _pickle_lower_bound(obj)
        elif fmt == "json" or type(obj) in _SCALARS or type(obj) in _CONTAINERS:
            estimate = _json_lower_bound(obj)
        else:
            estimate = None
        if estimate is not None and estimate > max_bytes:
            return {**out, "error": "too_large", "size": estimate, "estimated": True}
        encode = {"json": _encode_json, "repr": _encode_repr, "pickle": _encode_pickle}[fmt]
        result = encode(obj, max_bytes)
    except Exception as exc:
        result = {"error": "failed", "detail": _exc_name(exc)}
    return {**out, **result}


def set_value(
    ns: dict[str, Any], name: str, *, json_value: Any = _UNSET, pickle_b64: str | None = None
) -> dict[str, Any]:
    """Bind ``name`` to a decoded JSON value or a base64 (dill) pickle; refuse reserved names."""
    out: dict[str, Any] = {"name": name if type(name) is str else None, "ok": False}
    reason = _name_error(name, settable=True)
    if reason:
        return {**out, "error": reason}
    if pickle_b64 is not None:
        try:
            raw = base64.b64decode(pickle_b64, validate=True)
        except Exception:
            return {**out, "error": "bad_payload"}
        try:
            value = _pickler().loads(raw)
        except Exception as exc:
            return {**out, "error": "unpickle_failed", "detail": _exc_name(exc)}
    elif json_value is not _UNSET:
        value = json_value
    else:
        return {**out, "error": "no_value"}
    created = name not in ns
    ns[name] = value
    return {**out, "ok": True, "created": created, "type": _type_name(type(value))}


def delete_value(ns: dict[str, Any], name: str) -> dict[str, Any]:
    """Remove ``name`` from ``ns``; IPython-owned and private names are refused."""
    reason = _name_error(name, settable=True) or _name_error(name, ns)
    if reason:
        return {"name": name if type(name) is str else None, "ok": False, "error": reason}
    del ns[name]
    return {"name": name, "ok": True}


__all__ = [
    "list_variables",
    "listing_payload",
    "listing_result",
    "get_value",
    "set_value",
    "delete_value",
]
