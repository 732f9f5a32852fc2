"""The panel's TypeScript tests (jest): the model, and the request code against a real server.

``make test`` installs the labextension's node modules first; jest's global setup starts its own
``jupyter server`` with this interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

LABEXTENSION = REPO / "labextension"
JEST_TIMEOUT = 600  # seconds: installing nothing, compiling the tests, one server start


@pytest.mark.timeout(JEST_TIMEOUT + 30)
def test_jest(tmp_path: Path) -> None:
    assert shutil.which("npm"), "npm (Node.js >= 20.19) is needed to test the labextension"
    assert (LABEXTENSION / "node_modules").is_dir(), (
        "labextension/node_modules is missing: run `make labextension` "
        "(or `cd labextension && npm install`)"
    )
    log = tmp_path / "jest.log"
    with open(log, "w") as out:
        result = subprocess.run(
            ["npm", "test", "--", "--ci", "--colors=false"],
            cwd=LABEXTENSION,
            env={**os.environ, "KS_PYTHON": sys.executable, "FORCE_COLOR": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=JEST_TIMEOUT,
            check=False,
        )
    output = log.read_text()
    assert result.returncode == 0, output[-8000:]
    assert "failed" not in output.split("Tests:")[-1].split("\n")[0], output[-8000:]
