"""``jupyter kernel-sessions``: every command against a live server (``serve``, a subprocess).

Most commands run in-process through ``main(argv)`` (exit code, stdout, stderr); the entry
point, discovery and the error lines are also checked in real subprocesses.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from tests.support.cli_server import LiveServer, cli_subprocess, free_port, run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def cli(server: LiveServer) -> Iterator[Any]:
    """Run the CLI in this process as a client of ``server`` (found through its runtime file)."""
    with server.environment():
        yield run_cli


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, (code, out, err)
    return out


def one_error(result: tuple[int, str, str], code: int = 1) -> str:
    """The command failed with ``code`` and said so in exactly one ``error:`` line."""
    got, out, err = result
    assert got == code, (got, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_session_commands(cli: Any, server: LiveServer, tmp_path: Path) -> None:
    # create / list / info: --json is the API's Session, people get a line or a table
    s = json.loads(ok(cli("create", "c1", "--tag", "team=a", "--json")))
    assert (s["name"], s["state"], s["tags"]) == ("c1", "idle", {"team": "a"})
    assert ok(cli("create", "c2")).strip() == "created c2 (python3, idle)"
    listed = json.loads(ok(cli("list", "--json")))
    assert [x["name"] for x in listed] == ["c1", "c2"]
    table = ok(cli("list"))
    assert "NAME" in table and "team=a" in table and "c2" in table
    assert json.loads(ok(cli("--json", "info", "c1")))["kernel"]["id"] == s["kernel"]["id"]
    assert "team=a" in ok(cli("info", "c1"))

    # exec streams stdout and stderr, shows results; exit 1 when the code raised
    code, out, err = cli(
        "exec",
        "c1",
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\nz = {'a': [1, 2]}\n6 * 7",
    )
    assert (code, out, err) == (0, "out\n42\n", "err\n")
    code, out, err = cli("exec", "c1", "1/0")
    assert code == 1 and "ZeroDivisionError" in err and "\x1b[" not in err
    assert ok(cli("exec", "c1", "-", stdin="print('from stdin')")) == "from stdin\n"
    r = json.loads(ok(cli("exec", "c1", "q = 1; q + 1", "--json")))
    assert r["status"] == "ok" and r["outputs"][0]["data"]["text/plain"] == "2"
    assert json.loads(cli("exec", "c1", "raise KeyError('k')", "--json")[1])["status"] == "error"
    assert cli("exec", "c1", "raise KeyError('k')", "--json")[0] == 1

    # variables
    listing = json.loads(ok(cli("vars", "c1", "--json")))
    assert {v["name"] for v in listing["variables"]} == {"q", "z"}
    assert "PREVIEW" in ok(cli("vars", "c1"))
    assert json.loads(ok(cli("get", "c1", "z"))) == {"a": [1, 2]}
    assert ok(cli("get", "c1", "z", "--format", "repr")).strip() == "{'a': [1, 2]}"
    assert ok(cli("set", "c1", "w", '[1, "a"]')).strip() == "set c1.w (list)"
    assert json.loads(ok(cli("get", "c1", "w", "--json")))["value"] == [1, "a"]
    assert "not valid JSON" in one_error(cli("set", "c1", "w", "abc"))
    assert one_error(cli("get", "c1", "nope")) == "error: no variable named 'nope'"

    # connection file: private, and a stock client can use it
    path = Path(
        json.loads(ok(cli("connection-file", "c1", "-o", str(tmp_path / "c.json"), "--json")))[
            "path"
        ]
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kc = BlockingKernelClient()
    kc.load_connection_file(str(path))
    kc.start_channels(hb=False)
    try:
        assert kc.kernel_info(reply=True, timeout=30)["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    assert ok(cli("connection-file", "c2")).strip().endswith("kernel-session-c2.json")

    # rename / restart / interrupt / delete
    assert json.loads(ok(cli("rename", "c2", "c3", "--json")))["name"] == "c3"
    restarted = json.loads(ok(cli("restart", "c1", "--json")))
    assert restarted["restarts"] == 1 and restarted["kernel"]["id"] == s["kernel"]["id"]
    assert json.loads(ok(cli("vars", "c1", "--json")))["variables"] == []
    assert ok(cli("interrupt", "c1")).strip() == "interrupted c1"
    assert json.loads(ok(cli("delete", "c3", "--json"))) == {"deleted": "c3", "purged": False}
    assert one_error(cli("delete", "c3")) == "error: no session named 'c3'"
    assert one_error(cli("info", "c3")) == "error: no session named 'c3'"

    # user errors: one line, exit 1; usage errors: argparse's exit 2
    assert "must match" in one_error(cli("create", "Bad/Name"))
    assert one_error(cli("create", "c1")) == "error: session 'c1' already exists"
    assert cli("frobnicate")[0] == 2
    assert cli("list", "--bogus")[0] == 2
    assert cli("exec", "c1")[0] == 2
    assert cli()[0] == 2
    assert "--resize wants" in one_error(cli("pool", "--resize", "python3"))
    ok(cli("delete", "c1"))
    assert server.names() == []


def test_pool_command(cli: Any) -> None:
    pool = json.loads(ok(cli("pool", "--json")))
    assert pool["pools"]["python3"]["target"] == 1
    assert "KERNELSPEC" in ok(cli("pool"))
    resized = json.loads(ok(cli("pool", "--resize", "python3=2", "--json")))
    assert resized["pools"]["python3"]["target"] == 2
    assert (
        json.loads(ok(cli("pool", "--resize", "python3=1", "--json")))["pools"]["python3"]["target"]
        == 1
    )
    assert "no kernelspec named" in one_error(cli("pool", "--resize", "nope=1"))


def test_checkpoint_commands(cli: Any, server: LiveServer) -> None:
    ok(cli("create", "ck"))
    ok(cli("exec", "ck", "a = 1; f = lambda v: v + 1"))
    c = json.loads(ok(cli("checkpoint", "ck", "--label", "first", "--json")))
    assert c["session"] == "ck" and c["label"] == "first" and c["variable_count"] == 2
    assert {v["name"] for v in c["variables"]} == {"a", "f"}
    human = ok(cli("checkpoint", "ck"))
    assert human.startswith("checkpoint ") and "of ck: 2 variables" in human
    items = json.loads(ok(cli("checkpoints", "ck", "--json")))
    assert [i["label"] for i in items] == [None, "first"]  # newest first
    assert "first" in ok(cli("checkpoints", "ck"))

    # restore: a given checkpoint, into the session itself
    ok(cli("exec", "ck", "a = 99"))
    r = json.loads(ok(cli("restore", "ck", c["id"], "--json")))
    assert sorted(r["restored"]) == ["a", "f"] and r["failed"] == []
    assert json.loads(ok(cli("get", "ck", "a"))) == 1
    ok(cli("exec", "ck", "scratch = 2"))  # not in the checkpoint: the restore says it went
    said = ok(cli("restore", "ck", c["id"]))
    assert "removed 1 variable(s) the checkpoint does not have: scratch" in said, said
    # ... the latest one into a new session (a fork), and a fork at create time
    assert "into ck2" in ok(cli("restore", "ck", "--into", "ck2"))
    assert ok(cli("exec", "ck2", "f(a)")).strip() == "2"
    assert (
        json.loads(ok(cli("create", "ck3", "--from", f"ck:{c['id']}", "--json")))["name"] == "ck3"
    )
    assert ok(cli("exec", "ck3", "f(a)")).strip() == "2"
    assert one_error(cli("restore", "ck", "20000101T000000.000000Z-deadbeef"))

    # delete --purge takes the checkpoints along
    for name in ("ck2", "ck3"):
        ok(cli("delete", name))
    ok(cli("create", "keep"))
    ok(cli("exec", "keep", "kept = 'yes'"))
    ok(cli("checkpoint", "keep"))
    ok(cli("delete", "keep"))  # without --purge a new "keep" finds the old checkpoints
    # ... and meanwhile they stay reachable: listed with --deleted, forked into a new name
    assert one_error(cli("checkpoints", "keep"))
    assert len(json.loads(ok(cli("checkpoints", "keep", "--deleted", "--json")))) == 1
    assert "into kept2" in ok(cli("restore", "keep", "--into", "kept2"))
    assert ok(cli("exec", "kept2", "print(kept)")).strip() == "yes"
    ok(cli("delete", "kept2", "--purge"))
    ok(cli("create", "keep"))
    assert len(json.loads(ok(cli("checkpoints", "keep", "--json")))) == 1
    assert json.loads(ok(cli("delete", "ck", "--purge", "--json")))["purged"] is True
    ok(cli("create", "ck"))
    assert json.loads(ok(cli("checkpoints", "ck", "--json"))) == []
    for name in ("ck", "keep"):
        ok(cli("delete", name, "--purge"))
    assert server.names() == []


def test_install_kernelspec_and_console(cli: Any, server: LiveServer) -> None:
    out = json.loads(ok(cli("install-kernelspec", "etl", "--json")))
    spec = json.loads((Path(out["path"]) / "kernel.json").read_text())
    assert out["name"] == "session.etl" and out["path"].startswith(server.env["JUPYTER_DATA_DIR"])
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "kernel-sessions",
        "config": {"session": "etl"},
    }
    assert spec["display_name"] == "etl (session)" and server.token not in json.dumps(spec)
    assert "must match" in one_error(cli("install-kernelspec", "Nope!"))
    assert "no session named 'ghost'" in one_error(cli("console", "ghost"))
    ok(cli("create", "cons"))
    ok(cli("exec", "cons", "y = 7"))
    console = os.path.join(os.path.dirname(sys.executable), "jupyter-console")
    if not os.path.exists(console):  # not a dependency of the package: say how to get it
        assert "jupyter console is not installed" in one_error(cli("console", "cons"))
    else:  # a real console: it sees the namespace, and leaving it only detaches
        proc = cli_subprocess("console", "cons", "--simple-prompt", env=server.env, stdin=True)
        out, err = proc.communicate("print(y * 6)\nz = 1\n", timeout=120)
        assert proc.returncode == 0, (out, err)
        assert "42" in out and "detached from session cons (it keeps running)" in out, out
        assert json.loads(ok(cli("get", "cons", "z"))) == 1
    ok(cli("delete", "cons"))


def test_real_processes_entry_point_discovery_and_errors(
    server: LiveServer, tmp_path: Path
) -> None:
    """The ``jupyter kernel-sessions`` entry point in real processes, run side by side."""
    empty = {**server.env, "JUPYTER_RUNTIME_DIR": str(tmp_path / "no-servers")}
    procs = {
        "discovered": cli_subprocess("--json", "info", "nope", env=server.env),  # runtime file
        "no server": cli_subprocess("list", env=empty),
    }
    results = {k: (p.wait(120), p.stdout.read(), p.stderr.read()) for k, p in procs.items()}
    assert one_error(results["discovered"]) == "error: no session named 'nope'"
    line = one_error(results["no server"])
    assert "no running Jupyter server found" in line and "jupyter kernel-sessions serve" in line


def test_server_options_and_connection_errors(server: LiveServer, tmp_path: Path) -> None:
    empty = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "no-servers")}
    with server.environment(**empty):
        assert "check the token" in one_error(
            run_cli("list", "--url", server.url, "--token", "wrong")
        )
        assert (
            json.loads(
                ok(
                    run_cli(
                        "list", "--json", "--url", server.url.rstrip("/"), "--token", server.token
                    )
                )
            )
            == []
        )
        # the URL the server prints (its token in the query) and a browser's page URL work
        printed = f"{server.url}lab?token={server.token}"
        assert json.loads(ok(run_cli("list", "--json", "--url", printed))) == []
        page = f"{server.url}lab/tree/x.ipynb"
        assert (
            json.loads(ok(run_cli("list", "--json", "--url", page, "--token", server.token))) == []
        )
        dead = f"http://127.0.0.1:{free_port()}/"
        assert "cannot reach the server at" in one_error(run_cli("list", "--url", dead))
    with server.environment(
        **empty, JUPYTER_KERNEL_SESSIONS_URL=server.url, JUPYTER_TOKEN=server.token
    ):
        assert ok(run_cli("create", "env")).strip() == "created env (python3, idle)"
        assert ok(run_cli("delete", "env")).strip() == "deleted env"


def test_attached_clients_are_counted_once() -> None:
    from kernel_sessions.cli.render import attached_count

    one_notebook = {"notebooks": [{"path": "a.ipynb"}], "kernel": {"connections": 1}}
    assert attached_count(one_notebook) == 1
    assert attached_count({"notebooks": [], "kernel": {"connections": 2}}) == 2
    assert attached_count({"kernel": {}}) == 0


@pytest.mark.parametrize(
    ("url", "base", "token"),
    [
        ("localhost:8888", "http://localhost:8888/", None),
        ("http://h:8888/lab?token=abc", "http://h:8888/", "abc"),
        ("http://h:8888/base/lab/tree/x.ipynb?token=t&x=1", "http://h:8888/base/", "t"),
        ("https://h/base/", "https://h/base/", None),
        ("http://h:8888/tree", "http://h:8888/", None),
    ],
)
def test_server_urls_as_users_paste_them(url: str, base: str, token: str | None) -> None:
    from kernel_sessions.client.discovery import split_url

    assert split_url(url) == (base, token)


@pytest.fixture(autouse=True)
def _no_url_env() -> Iterator[None]:
    """A developer's own server settings never leak into these tests."""
    saved = {
        k: os.environ.pop(k)
        for k in ("JUPYTER_KERNEL_SESSIONS_URL", "JUPYTER_TOKEN")
        if k in os.environ
    }
    yield
    os.environ.update(saved)


def test_an_html_answer_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    """A URL that is not the server's API (a proxy's login page, a web app) answers HTML with
    200: that is an error, never "no sessions"."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = b"<html><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/lab"
        line = one_error(run_cli("list", "--url", url, "--token", "t"))
        assert "is not JSON" in line
    finally:
        httpd.shutdown()
        thread.join(10)
