"""`bitsmith dashboard`: a real study served over HTTP by optuna-dashboard, and its one-line errors."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from bitsmith.search.storage import open_storage
from tests.cli.test_cli import cli

N_TRIALS = 5


def make_study(journal: Path, name: str, n_trials: int = N_TRIALS) -> None:
    """A small finished study in a journal written the way `bitsmith search` writes it."""
    storage, _ = open_storage(None, journal)

    def objective(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        trial.set_user_attr("software_metrics", {"accuracy": 1.0 - x * x})
        return x * x

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=name, storage=storage,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(objective, n_trials=n_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)


def journal_of(project_dir: Path, project: str) -> Path:
    return project_dir / project / "search" / "study.journal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(d: Path, port: int, **popen) -> subprocess.Popen:
    """``bitsmith dashboard`` as a terminal runs it: with Ctrl-C's default action, even when the suite itself
    was started in the background, where a shell ignores SIGINT and its children inherit that."""
    return subprocess.Popen([sys.executable, "-m", "bitsmith", "dashboard", "--project-dir", str(d), "--port",
                             str(port)], text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **popen)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_serves_the_study_over_http_and_stops_on_ctrl_c(tmp_path):
    d = tmp_path / "D"
    make_study(journal_of(d, "proj"), "proj")
    port = free_port()
    out_file, err_file = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_file.open("w") as out, err_file.open("w") as err:
        proc = start_dashboard(d, port, stdout=out, stderr=err)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, studies = time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                studies = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert studies is not None, f"the dashboard never answered: {err_file.read_text()}"
        assert [s["study_name"] for s in studies] == ["proj"]
        detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
        trials = detail["trials"]
        assert len(trials) == N_TRIALS
        assert [t["number"] for t in trials] == list(range(N_TRIALS))
        assert all(t["state"] == "Complete" for t in trials)
        assert all([a["key"] for a in t["user_attrs"]] == ["software_metrics"] for t in trials)
        assert all(t["params"][0]["name"] == "x" for t in trials)
        assert f"dashboard: http://127.0.0.1:{port}/ (Ctrl-C to stop)" in out_file.read_text().splitlines()

        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        err_text = err_file.read_text()
        assert code == 0, err_text
        assert "Traceback" not in err_text
        assert "warning" not in err_text  # loopback: no authentication warning
        assert out_file.read_text().splitlines()[-1] == "dashboard: stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_ctrl_c_stops_it_while_requests_are_being_served(tmp_path):
    """wsgiref catches whatever a request raises, Ctrl-C included: served from the main thread, a Ctrl-C
    that landed in a request was printed and ignored, and the dashboard ran on."""
    import threading

    d = tmp_path / "D"
    make_study(journal_of(d, "proj"), "proj", n_trials=300)  # each request takes a while
    port = free_port()
    err_file = tmp_path / "err.txt"
    with err_file.open("w") as err:
        proc = start_dashboard(d, port, stdout=subprocess.PIPE, stderr=err)
    url = f"http://127.0.0.1:{port}/api/studies/0"
    stop, served = threading.Event(), []

    def hammer():  # a request always in flight, as from an open browser tab
        while not stop.is_set():
            try:
                get_json(url)
                served.append(1)
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(served) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(served) >= 5, f"the dashboard never answered: {err_file.read_text()}"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert out.splitlines()[-1] == "dashboard: stopped"
        assert "Traceback" not in err_file.read_text() and "KeyboardInterrupt" not in err_file.read_text()
    finally:
        stop.set()
        worker.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def fake_server(monkeypatch):
    """The server replaced by a recorder of the storage optuna-dashboard's app was made on, for the checks
    that need no real server."""
    import optuna_dashboard

    from bitsmith import dashboard

    calls = []
    monkeypatch.setattr(optuna_dashboard, "wsgi", lambda storage: storage)
    monkeypatch.setattr(dashboard, "serve", lambda app, host, port: calls.append((app, host, port)))
    return calls


def test_missing_extra_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # `import optuna_dashboard` raises ImportError
    code, out, err = cli(capsys, "dashboard", "--project-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert err == "bitsmith: error: bitsmith dashboard needs optuna-dashboard: pip install 'bitsmith[dashboard]'\n"


def test_no_journal_exits_2_with_one_line(tmp_path, capsys, fake_server):
    (tmp_path / "D" / "proj" / "checkpoints").mkdir(parents=True)  # a project without a search
    for project_dir in (tmp_path / "D", tmp_path / "missing"):
        code, out, err = cli(capsys, "dashboard", "--project-dir", str(project_dir))
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert f"no study journal under {project_dir}" in err and "bitsmith search" in err
    assert "(no such directory)" in err
    code, _, err = cli(capsys, "dashboard", "--storage", str(tmp_path / "nothing.journal"))
    assert code == 2 and f"no study journal at {tmp_path / 'nothing.journal'}" in err
    assert not (tmp_path / "nothing.journal").exists()  # not created by looking
    assert fake_server == []


def test_several_projects_ask_for_project(tmp_path, capsys, fake_server):
    d = tmp_path / "D"
    for project in ("beta", "alpha"):
        make_study(journal_of(d, project), project, n_trials=1)
    code, out, err = cli(capsys, "dashboard", "--project-dir", str(d))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "2 projects under" in err and "alpha, beta" in err and "--project NAME" in err
    code, _, err = cli(capsys, "dashboard", "--project-dir", str(d), "--project", "gamma")
    assert code == 2 and "no study journal at" in err and "projects with studies: alpha, beta" in err
    assert fake_server == []

    code, out, err = cli(capsys, "dashboard", "--project-dir", str(d), "--project", "beta", "--port", "8123")
    assert code == 0, err
    [(storage, host, port)] = fake_server
    assert (host, port) == ("127.0.0.1", 8123)
    assert [s.study_name for s in storage.get_all_studies()] == ["beta"]
    assert out.splitlines() == [f"dashboard: 1 study (beta) in {journal_of(d, 'beta')}",
                                "dashboard: http://127.0.0.1:8123/ (Ctrl-C to stop)", "dashboard: stopped"]
    assert err == ""


def test_storage_flag_and_open_host_warning(tmp_path, capsys, fake_server):
    journal = tmp_path / "elsewhere.journal"
    make_study(journal, "mine", n_trials=2)
    port = free_port()
    code, out, err = cli(capsys, "dashboard", "--storage", str(journal), "--host", "0.0.0.0", "--port", str(port))
    assert code == 0, err
    assert f"dashboard: http://0.0.0.0:{port}/ (Ctrl-C to stop)" in out
    [warning] = err.splitlines()
    assert warning.startswith("warning: the dashboard has no authentication")
    assert [s.study_name for s in fake_server[0][0].get_all_studies()] == ["mine"]


def test_ctrl_c_exits_0(tmp_path, capsys, monkeypatch):
    from bitsmith import dashboard

    def interrupted(app, host, port):
        raise KeyboardInterrupt

    monkeypatch.setattr(dashboard, "serve", interrupted)
    make_study(journal_of(tmp_path, "proj"), "proj", n_trials=1)
    code, out, err = cli(capsys, "dashboard", "--project-dir", str(tmp_path), "--port", str(free_port()))
    assert code == 0 and err == "" and out.endswith("dashboard: stopped\n")


def test_port_in_use_exits_2_with_one_line(tmp_path, capsys):
    make_study(journal_of(tmp_path, "proj"), "proj", n_trials=1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = cli(capsys, "dashboard", "--project-dir", str(tmp_path), "--port", str(port))
    assert code == 2 and out == ""
    assert err == (f"bitsmith: error: port {port} on 127.0.0.1 is already in use; stop what uses it or choose "
                   "another port with --port N\n")
