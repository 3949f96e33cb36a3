"""Where Ray cannot be reached or started, the driver says why before `ray.init` spends
minutes on it: RAY_ADDRESS pointing at something that is not a Ray head (it asks first, in
seconds, and says what listens there; a real head answering the same probe:
test_runtime_cluster.py), a local run's temp dir without room."""

from __future__ import annotations

import http.server
import os
import shutil
import io
import socket
import socketserver
import tempfile
import threading
from pathlib import Path

import pytest

from hpoc.runtime import probe
from hpoc.runtime.study import EXIT_FAILED, RunOptions, run_study
from runtime_plans import make_plan, write_toy


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = socketserver.TCPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _listener(reply):
    """A TCP server on 127.0.0.1 that answers each connection with `reply(conn)`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    conns = []

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conns.append(conn)
            reply(conn)

    threading.Thread(target=serve, daemon=True).start()
    return sock, conns


@pytest.fixture
def listener(request):
    sock, conns = _listener(request.param)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("listener, said", [
    (lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n"), "a server that greets with `SSH-2.0-OpenSSH_9.2`"),
    (lambda conn: conn.close(), "a server that closes connections at once"),
    (lambda conn: None, "a server that accepts connections but did not answer within 0.5 s"),
], indirect=["listener"], ids=["banner", "closes", "silent"])
def test_the_probe_names_what_listens_instead_of_a_ray_head(listener, said):
    assert probe.not_ray(listener, timeout=0.5) == said


def test_the_probe_lets_a_slow_ray_head_through(request):
    """A loaded head's GCS (any gRPC server) that answers after the probe's timeout greets a
    raw connection with HTTP/2's SETTINGS frame: it was refused as "a server that greets with
    `????????`", a real head named as something else."""
    import time
    from concurrent import futures

    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    class Slow(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):
        def GetClusterId(self, req, context):
            time.sleep(1.0)
            return gcs_service_pb2.GetClusterIdReply()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gcs_service_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    request.addfinalizer(lambda: server.stop(None))
    assert probe.not_ray(f"127.0.0.1:{port}", timeout=0.3) is None


def test_the_probe_names_an_http_server(http_server):
    assert probe.not_ray(http_server).startswith("an HTTP server (it answered `HTTP/1.0 501")


def test_the_driver_refuses_an_http_server_at_ray_address_before_ray_init(
        http_server, tmp_path, monkeypatch, capsys):
    """`python -m http.server` on the port: ray.init retried it for more than two minutes."""
    import ray

    called = []
    monkeypatch.setattr(ray, "init", lambda **kw: called.append(kw))
    monkeypatch.setenv("RAY_ADDRESS", http_server)
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    code = run_study(plan, RunOptions(progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == EXIT_FAILED and called == []
    assert (f"cannot connect to the Ray cluster at RAY_ADDRESS={http_server}: an HTTP server "
            "(it answered `HTTP/1.0 501") in err
    assert "listens there, not a Ray head" in err and "--local" in err and "token" not in err


def test_a_full_temp_dir_is_refused_before_ray_starts(tmp_path, monkeypatch, capsys):
    """Ray timed out "during startup" half a minute later, naming neither the disk nor HPOC_TMP."""
    import ray

    from hpoc.runtime import session

    called = []
    monkeypatch.setattr(ray, "init", lambda **kw: called.append(kw))
    short = Path(tempfile.mkdtemp(prefix="hpt-", dir="/tmp"))  # room for Ray's socket paths
    monkeypatch.setenv("HPOC_TMP", str(short))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    usage = shutil.disk_usage(short)
    monkeypatch.setattr(session.shutil, "disk_usage", lambda path: usage._replace(free=24 * 1024))
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    try:
        code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
        err = capsys.readouterr().err
        assert code == 2 and called == [], err
        assert f"HPOC_TMP={short} has 0.0 MiB free: a local run's Ray needs 32 MiB there" in err
        assert not list(short.iterdir())  # no temp dir made, none left
    finally:
        shutil.rmtree(short)


def test_a_second_local_run_is_told_it_shares_the_cores(monkeypatch):
    """Two local runs of one user each gave Ray every core: twice the trials the machine can
    run at once, each slower, and nothing said so."""
    import json
    import socket
    import subprocess
    import sys
    import time

    import ray

    from hpoc.runtime import session, study

    monkeypatch.setattr(ray, "init", lambda **kw: None)
    root = Path(tempfile.mkdtemp(prefix="hpt-", dir="/tmp"))
    monkeypatch.setenv("HPOC_TMP", str(root))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        other = root / "hpoc-other123"
        other.mkdir()
        (other / session.OWNER).write_text(json.dumps(
            {"pid": live.pid, "host": socket.gethostname(), "started": time.time(), "cpus": 2}))
        alone = session.start_local(workdir=None, num_cpus=1)
        alone.close()
        live.kill()
        live.wait()
        assert alone.neighbours == [json.loads((other / session.OWNER).read_text())]
        line = study._sharing_line(alone.neighbours)
        assert line.startswith("[hpoc] warning: 1 other local run(s) of yours share this machine's ")
        assert line.endswith(f"core(s) (pid {live.pid}; 2 CPU slot(s) between them): trials run slower; "
                             "`--cpus N` gives a run fewer slots")
        again = session.start_local(workdir=None, num_cpus=1)  # that run ended
        again.close()
        assert again.neighbours == [] and not other.exists()
    finally:
        live.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.ray
def test_a_temp_dir_that_fills_up_while_trials_run_is_named(tmp_path, monkeypatch, capsys):
    """A trial printing more than HPOC_TMP held: Tune failed writing into the temp dir, and
    the run ended as an hpoc "internal error" behind Ray's tracebacks."""
    import errno
    import shutil as sh

    from ray.tune.error import TuneError

    from hpoc.runtime import session, study

    class Tuner:
        def fit(self):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:
                raise TuneError("Traceback (most recent call last): ...") from exc

    monkeypatch.setattr(study, "build_tuner", lambda *a, **kw: (Tuner(), 1))
    temps = []
    real = sh.disk_usage

    def usage(path):
        got = real(path)
        if temps and str(path) == os.path.dirname(temps[0]):
            return got._replace(free=3 * 1024**2)
        return got

    start = session.start_local
    monkeypatch.setattr(session, "start_local", lambda **kw: temps.append((s := start(**kw)).temp_dir) or s)
    monkeypatch.setattr(session.shutil, "disk_usage", usage)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    code = run_study(plan, RunOptions(local=True, num_cpus=1, progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == EXIT_FAILED, err
    assert ("no space left on a device while the study ran: the run's temp dir in "
            f"{os.path.dirname(temps[0])} has 3.0 MiB free") in err
    assert "run the same plan again to resume" in err


@pytest.mark.parametrize("verbose", [False, True])
def test_a_local_run_without_v_leaves_rays_worker_died_paragraph_out(monkeypatch, capsys, verbose):
    """`(raylet) A worker died or was killed …` reached the terminal without -v: Ray prints
    the raylet's reports from a thread that `log_to_driver=False` leaves running."""
    import tempfile

    import ray
    from ray._private import worker

    from hpoc.runtime import session

    monkeypatch.setattr(ray, "init", lambda **kw: None)
    monkeypatch.setattr(worker, "print_to_stdstream", worker.print_to_stdstream)  # put back after
    monkeypatch.setattr(worker.stdout_deduplicator, "deduplicate", lambda data: [data])  # each line shown
    root = Path(tempfile.mkdtemp(prefix="hpt-", dir="/tmp"))
    monkeypatch.setenv("HPOC_TMP", str(root))
    try:
        session.start_local(workdir=None, num_cpus=1, verbose=verbose).close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    died = "A worker died or was killed while executing a task by an unexpected system error."
    capsys.readouterr()
    for line in (died, "Task was killed due to the node running low on memory."):  # as the listener calls it
        worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    out = capsys.readouterr().out
    assert (died in out) == verbose and "running low on memory" in out
