"""The package's layers, read from the source: nothing imports a layer above its own, the
kernel-side code needs only the standard library, and the core needs neither tornado nor
jupyter_server. Checked statically (every import statement, at any depth, TYPE_CHECKING
blocks excepted), so an import hidden inside a function counts too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "kernel_sessions"
# a layer may import its own and those listed (the package root re-exports lazily and is
# left out); anything else in kernel_sessions is upward or sideways
ALLOWED: dict[str, set[str]] = {
    "kernel": set(),
    "core": {"kernel"},
    "pool": {"kernel", "core"},
    "checkpoint": {"kernel", "core"},
    "client": set(),
    "server": {"kernel", "core", "pool", "checkpoint"},
    "provisioner": {"core", "client"},
    "cli": {"core", "client", "provisioner"},
}
# used by the kernel-side code when the kernel has them, imported inside a function, optional
KERNEL_OPTIONAL = {"dill", "blake3"}
THIRD_PARTY_BANNED = {"core": {"tornado", "jupyter_server"}, "client": {"jupyter_server"}}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text("utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are for the type checker only
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((f"<relative {node.module}>", node.lineno))
    return found


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_layer_imports_upward(layer: str) -> None:
    wrong = []
    for path in _modules(layer):
        for name, line in _imports(path):
            if name.startswith("<relative"):
                wrong.append(f"{path.relative_to(REPO)}:{line} relative import")
                continue
            parts = name.split(".")
            if parts[0] != "kernel_sessions" or len(parts) == 1:
                continue
            if parts[1] != layer and parts[1] not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_every_module_is_in_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(ALLOWED)


def test_kernel_side_code_uses_only_the_standard_library() -> None:
    outside = []
    for path in _modules("kernel"):
        for name, line in _imports(path):
            top = name.split(".")[0]
            if top in KERNEL_OPTIONAL:
                continue
            if top != "kernel_sessions" and top not in sys.stdlib_module_names:
                outside.append(f"{path.relative_to(REPO)}:{line} imports {name}")
            elif top == "kernel_sessions":
                outside.append(
                    f"{path.relative_to(REPO)}:{line} imports {name} (runs in kernels "
                    "where kernel_sessions may not be importable)"
                )
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("layer", sorted(THIRD_PARTY_BANNED))
def test_lower_layers_need_no_web_server(layer: str) -> None:
    found = [
        f"{p.relative_to(REPO)}:{line} imports {name}"
        for p in _modules(layer)
        for name, line in _imports(p)
        if name.split(".")[0] in THIRD_PARTY_BANNED[layer]
    ]
    assert not found, "\n".join(found)


def test_no_module_is_far_over_the_size_hint() -> None:
    """Around 400 lines is the hint to split; the kernel-side modules are the known exceptions
    (one module each is what ships into a kernel today)."""
    big = {
        p.relative_to(REPO).as_posix(): len(p.read_text("utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
        if "labextension" not in p.parts
    }
    over = {p: n for p, n in big.items() if n > 800 and not p.startswith("kernel_sessions/kernel/")}
    assert not over, over
