"""``bitsmith dashboard``: show a study storage in optuna-dashboard (the optional ``dashboard`` extra).

optuna-dashboard serves one storage. With ``--project-dir`` that is the journal
``<project-dir>/<project>/search/study.journal`` of the one project that has one
(or the project ``--project`` names); ``--storage`` gives a journal file or a
database URL instead. The storage is opened with bitsmith's own
:func:`~bitsmith.search.storage.open_storage`, so the dashboard reads and locks
the journal exactly as a running ``bitsmith search`` does, and sees its trials
as they finish.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bitsmith.errors import BitsmithError

JOURNAL = Path("search") / "study.journal"  # under <project-dir>/<project>/
MISSING_EXTRA = "bitsmith dashboard needs optuna-dashboard: pip install 'bitsmith[dashboard]'"


def serve_from_args(args: argparse.Namespace) -> int:
    """Serve the storage the command line names until Ctrl-C; the exit status."""
    try:
        import optuna_dashboard
    except ImportError:
        raise BitsmithError(MISSING_EXTRA) from None
    host, port = args.host, args.port
    if not 1 <= port <= 65535:
        raise BitsmithError(f"--port {port} is not a port; give a number from 1 to 65535")
    url, journal, source = _storage_url(args)
    _check_port(host, port)

    from bitsmith.search.storage import open_storage

    storage, _ = open_storage(url, journal, create=False)
    studies = _study_names(storage, source)
    shown = f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} ({', '.join(studies)})" if studies \
        else "no studies yet"
    print(f"dashboard: {shown} in {source}")
    if not is_loopback(host):
        print(f"warning: the dashboard has no authentication: anyone who can reach {host}:{port} can see, change "
              "and delete these studies; use --host 127.0.0.1 to serve this machine only", file=sys.stderr)
    print(f"dashboard: http://{_url_host(host)}:{port}/ (Ctrl-C to stop)", flush=True)
    sys.stderr.flush()
    try:
        serve(optuna_dashboard.wsgi(storage), host, port)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):  # taken after _check_port looked
            raise _listen_error(host, port, e) from None
        raise
    print("dashboard: stopped")
    return 0


class _Handler(WSGIRequestHandler):
    def address_string(self) -> str:
        return self.client_address[0]  # the request log names the client's address, with no DNS lookup


def serve(app, host: str, port: int) -> None:
    """Serve the WSGI ``app`` on ``host:port`` until Ctrl-C (which this raises, once the server has stopped).

    The server runs in a thread and the main thread only waits: Ctrl-C is raised in the main thread, and
    wsgiref's handler catches everything a request raises, so a Ctrl-C landing in a request was printed and
    ignored (optuna-dashboard's own ``run_server`` serves in the main thread)."""
    server_class = type("Server", (WSGIServer,), {"address_family": socket.AF_INET6 if ":" in host
                                                  else socket.AF_INET})
    server = make_server(host.strip("[]"), port, app, server_class, _Handler)
    worker = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
    finally:
        server.shutdown()  # after the request in flight, if any
        server.server_close()


def _storage_url(args: argparse.Namespace) -> tuple[str | None, Path, str]:
    """``open_storage``'s arguments for the storage to show (a URL, or None and a journal), and its name."""
    if args.storage:
        if args.project:
            raise BitsmithError("--project picks a journal under --project-dir; with --storage give one or the "
                                "other, not both")
        url = args.storage
        if url.endswith((".journal", ".log")) or url.startswith("journal:"):
            path = Path(url.removeprefix("journal:").removeprefix("//"))
            if not path.is_file():
                raise BitsmithError(f"no study journal at {path}; create a study with `bitsmith search ... "
                                    f"--storage {path}`")
            return None, path, str(path)
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///").split("?", 1)[0]
            if path and path != ":memory:" and not Path(path).is_file():
                # Opening it would create an empty database; say so instead.
                raise BitsmithError(f"no database file {path} for --storage {url}; create a study with "
                                    f"`bitsmith search ... --storage {url}`")
        return url, Path(), url
    root = Path(args.project_dir)
    found = sorted(p.parent.parent.name for p in root.glob(f"*/{JOURNAL.as_posix()}") if p.is_file())
    create = f"create one with `bitsmith search MODEL DATASET --config FILE --project-dir {root}`"
    if args.project:
        path = root / args.project / JOURNAL
        if path.is_file():
            return None, path, str(path)
        others = f"projects with studies: {', '.join(found)}" if found else create
        raise BitsmithError(f"no study journal at {path}; {others}")
    if not found:
        where = "" if root.is_dir() else " (no such directory)"
        raise BitsmithError(f"no study journal under {root}{where} (looked for {root / '*' / JOURNAL}); "
                            f"{create}")
    if len(found) > 1:
        raise BitsmithError(f"{len(found)} projects under {root} have studies: {', '.join(found)}; "
                            f"optuna-dashboard shows one at a time, so choose one with --project NAME")
    path = root / found[0] / JOURNAL
    return None, path, str(path)


def _study_names(storage, source: str) -> list[str]:
    try:
        return [s.study_name for s in storage.get_all_studies()]
    except Exception as e:  # a damaged journal, a database without Optuna's tables
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BitsmithError(f"cannot read studies from {source}: {first}") from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to an outside interface
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_port(host: str, port: int) -> None:
    """Fail with one line, before the server prints its banner, when ``host:port`` cannot be listened on."""
    # The same socket ``serve`` makes: wsgiref binds (host, port) with SO_REUSEADDR, IPv6 for a ':' host.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host.strip("[]"), port))
    except OSError as e:
        raise _listen_error(host, port, e) from None


def _listen_error(host: str, port: int, e: OSError) -> BitsmithError:
    if e.errno == errno.EADDRINUSE:
        return BitsmithError(f"port {port} on {host} is already in use; stop what uses it or choose another "
                             "port with --port N")
    if e.errno == errno.EACCES:
        return BitsmithError(f"no permission to listen on port {port}; choose a port above 1023 with --port N")
    if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
        return BitsmithError(f"cannot listen on {host}: not an address of this machine; give one with --host "
                             "(127.0.0.1: this machine only)")
    return BitsmithError(f"cannot listen on {host}:{port}: {e.strerror or e}")
