"""The naive way to list a namespace, as jupyterlab-variableinspector does: full repr of all.

Used only as the baseline of bench/variables.py; it is sent into the kernel like our inspector.
"""

from __future__ import annotations

import json

PREVIEW = 200


def naive_listing(ns: dict) -> str:
    out = []
    for name, value in list(ns.items()):
        if name.startswith("_") or name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        out.append({"name": name, "type": type(value).__name__, "preview": repr(value)[:PREVIEW]})
    return json.dumps(out)
