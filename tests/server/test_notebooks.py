"""The example notebooks run top to bottom in a real kernel (nbclient).

``programmatic-access`` manages its own sessions in-process; the others talk to a Jupyter server
(a real ``jupyter server`` subprocess here, found through ``JUPYTER_KERNEL_SESSIONS_URL`` and
``JUPYTER_TOKEN`` as it would be inside JupyterLab).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.browser.lab import LabServer
from tests.support import REPO

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = [NOTEBOOK_DIR / "programmatic-access.ipynb"]
# notebooks that use a server -> what their results (text/plain) must contain, in order
SERVER_NOTEBOOKS = {
    "named-sessions": [
        "('example-attach', 'idle', 'python3')",
        "[1, 2, 3]",
        "'example-attach (session)'",
        "(True, ['report.ipynb'])",
        "([], 'idle', [1, 2, 3])",
        "False",
    ],
    "variables-and-checkpoints": [
        "'ok'",
        "'500.0'",
        "('weights', 'numpy.ndarray', [100, 10], 8000)",
        "('baseline', ['config', 'np', 'score', 'weights'], [])",
        "(['config', 'np', 'score', 'weights'], ['scratch'], '500.0')",
        "('example-model-b', \"{'lr': 0.01, 'epochs': 3}\")",
        "(True, '500.0')",
    ],
}


def test_every_notebook_is_run() -> None:
    names = {p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")}
    assert names == {p.stem for p in NOTEBOOKS} | set(SERVER_NOTEBOOKS)


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    server = LabServer(tmp_path_factory.mktemp("nbserver"), lab=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("stem", sorted(SERVER_NOTEBOOKS))
async def test_server_notebook_runs(
    stem: str, notebook_server: LabServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_KERNEL_SESSIONS_URL", notebook_server.url)
    monkeypatch.setenv("JUPYTER_TOKEN", notebook_server.token)
    nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    await client.async_execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, "\n".join("\n".join(e.get("traceback", [])) for e in errors)
    texts = [o["data"]["text/plain"] for o in outputs if o.output_type == "execute_result"]
    expected = SERVER_NOTEBOOKS[stem]
    assert len(texts) == len(expected), texts
    for text, part in zip(texts, expected):
        assert part in text, (part, texts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    await client.async_execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    assert "('demo', 'idle')" in texts
    assert any("('x', 'int', '42')" in t for t in texts)
    assert "84" in texts
