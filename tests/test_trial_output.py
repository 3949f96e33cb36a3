"""What a trial prints is kept with a cap (hpoc/runtime/output.py), and Ray's copy too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from hpoc.runtime import output
from hpoc.runtime import session as session_mod


def test_a_trial_printing_every_step_keeps_its_latest_output_within_twice_the_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(output, "CAP_BYTES", 1000)
    with output.kept(str(tmp_path)):
        for step in range(500):
            print(f"step {step:04d}")
        print("the last words", file=sys.stderr)
    assert capsys.readouterr().out.count("step") == 500  # the process's own stream: everything
    out, before = (tmp_path / "stdout").read_text(), (tmp_path / "stdout.1").read_text()
    assert out.endswith("step 0499\n") and before.endswith(f"step {int(out[5:9]) - 1:04d}\n")
    assert len(out) <= 1000 and len(before) <= 1000 and not (tmp_path / "stdout.2").exists()
    assert (tmp_path / "stderr").read_text() == "the last words\n"
    assert not isinstance(sys.stdout, output._Tee)  # put back for the next trial of the process


def test_one_write_over_the_cap_keeps_its_end(tmp_path):
    log = output.CappedLog(str(tmp_path / "stdout"), cap=10)
    log.write("x" * 50 + "0123456789")
    log.close()
    assert (tmp_path / "stdout").read_text() == "0123456789"


def test_a_local_runs_ray_rotates_its_processes_logs_unless_told_otherwise(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(os.environ))  # workers inherit it
    monkeypatch.delenv("RAY_ROTATION_MAX_BYTES", raising=False)
    monkeypatch.setenv("RAY_ROTATION_BACKUP_COUNT", "3")
    s = session_mod.start_local(workdir=None, num_cpus=1)
    s.close()
    assert seen["RAY_ROTATION_MAX_BYTES"] == str(16 * 2**20) and seen["RAY_ROTATION_BACKUP_COUNT"] == "3"
    assert "RAY_ROTATION_MAX_BYTES" not in os.environ and os.environ["RAY_ROTATION_BACKUP_COUNT"] == "3"


# What Ray says of a trial whose process died, whatever the cause
_DIED = ("Failure # 1 (occurred at 2026-11-30_02-59-35)\nThe actor died unexpectedly before finishing this "
         "task.\n\tclass_name: ImplicitFunc\nThe actor is dead because its worker process has died. Worker "
         "exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error code "
         "2. End of file. Some common causes include: (1) the process was killed by the OOM killer ...")


def test_a_trial_whose_process_crashes_says_what_crashed_and_where(tmp_path):
    """A segfault in the trial (a C extension, ctypes) or os.abort(): Ray said only that the
    worker died, listing every cause it knows; Python's stack of it went to Ray's worker
    log, which a local run removes. It is kept in the trial's stderr, and the line names it."""
    from hpoc.runtime import crash, summary

    script = tmp_path / "trainer.py"
    script.write_text("import ctypes, sys\nfrom hpoc.runtime import output\n"
                      "with output.kept(sys.argv[1]):\n    print('epoch 1')\n    ctypes.string_at(0)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True)
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in (tmp_path / "stderr").read_text()
    text = crash.with_crash(_DIED, str(tmp_path))
    assert summary.error_at(text) == ("the trial's process crashed: Segmentation fault (Python's stack of it "
                                      f"is at the end of the trial's stderr) at {script}:5")
    # killed (the OOM killer, os._exit): nothing to show but that
    assert summary.error_at(crash.with_crash(_DIED, str(tmp_path / "none"))).startswith(
        "the trial's process died without a Python error: killed")
    # a crash the trial's output went on after is an earlier attempt's, not this failure's
    with open(tmp_path / "stderr", "a") as fh:
        fh.write("epoch 1\n")
    assert crash.crash(str(tmp_path)) is None
    # another error, or an earlier attempt's death, stays as it was
    assert crash.with_crash("RuntimeError: boom", str(tmp_path)) == "RuntimeError: boom"
    assert summary.error_line(_DIED + "\nFailure # 2 (occurred at x)\nRuntimeError: boom") == "RuntimeError: boom"


def test_a_trial_leaves_the_processs_crash_handler_as_it_found_it(tmp_path):
    import faulthandler

    was = faulthandler.is_enabled()
    with output.kept(str(tmp_path)):
        assert faulthandler.is_enabled()
    assert faulthandler.is_enabled() == was


def test_a_rotation_after_the_trial_leaves_the_crash_handler_alone(tmp_path):
    """kept()'s stderr kept calling crash_stack's callback after its block: a rotation in that
    moment (another thread writing 16 MiB) pointed faulthandler at the trial's file again,
    on a descriptor nobody closed."""
    import faulthandler

    path = str(tmp_path / "stderr")
    was = faulthandler.is_enabled()
    with output.crash_stack(path) as follow:
        pass
    follow()  # the rotation, late
    assert faulthandler.is_enabled() == was
    assert not [fd for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path)]


def test_a_crash_after_stderr_rotated_is_at_the_end_of_the_current_stderr(tmp_path):
    """faulthandler wrote to the file it was given at the start: once the trial's stderr
    passed the cap, that file was `stderr.1` (not read), and after a second rotation it was
    gone, and the crash's stack with it."""
    from hpoc.runtime import crash

    script = tmp_path / "trainer.py"
    script.write_text("import ctypes, sys\nfrom hpoc.runtime import output\noutput.CAP_BYTES = 1000\n"
                      "with output.kept(sys.argv[1]):\n    for i in range(300):\n"
                      "        print(f'step {i:04d}', file=sys.stderr, flush=True)\n"
                      "    ctypes.string_at(0)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True)
    assert done.returncode != 0
    assert "Fatal Python error" not in (tmp_path / "stderr.1").read_text()
    stack = crash.crash(str(tmp_path))
    assert stack and stack.startswith("Fatal Python error: Segmentation fault") and f'"{script}", line 7' in stack


def test_a_crash_is_placed_at_its_innermost_frame_in_the_studys_code(tmp_path):
    """faulthandler lists the innermost call first, a traceback last: the line named the
    outermost frame of the study's code (the trainer's method), not where it crashed."""
    from hpoc.runtime import summary

    (tmp_path / "stderr").write_text(
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n"
        f'  File "{sysconfig.get_paths()["stdlib"]}/ctypes/__init__.py", line 519 in string_at\n'
        '  File "/home/me/study/native.py", line 3 in decode\n'
        '  File "/home/me/study/train.py", line 42 in train_epoch\n'
        f'  File "{os.path.dirname(summary.__file__)}/trainer.py", line 504 in train\n\nExtension modules: numpy\n')
    from hpoc.runtime import crash

    assert summary.error_at(crash.with_crash(_DIED, str(tmp_path))).endswith(" at /home/me/study/native.py:3")


# Ray Train's error of a worker group whose rank 1 died: rank 0 lost its peer
_TRAIN_DIED = ("Failure # 1 (occurred at 2026-11-30_05-56-59)\nray.train.WorkerGroupError: Training failed due to "
               "worker errors:\n[Rank 0 Error Snippet]:\nRuntimeError: [gloo/transport/tcp/pair.cc:561] Connection "
               "closed by peer [127.0.0.1]:2465.\n\n[Rank 1 Error Snippet]:\nA worker health check failed.\n"
               "The actor died unexpectedly before finishing this task.\n\tclass_name: RayTrainWorker\n"
               "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR ...")


def test_a_multi_worker_trial_says_which_rank_crashed_and_where(tmp_path):
    """Ray's error listed every rank's failure and every way a worker dies; the line said the
    trial's process died without a Python error, though rank 1 segfaulted."""
    from hpoc.runtime import crash, summary

    script = tmp_path / "trainer.py"
    script.write_text("import ctypes, sys\nfrom hpoc.runtime import output\n"
                      "with output.rank_crash(sys.argv[1], 1):\n    ctypes.string_at(0)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True).returncode
    assert crash.dead_rank(_TRAIN_DIED) == 1
    assert summary.error_at(crash.with_crash(_TRAIN_DIED, str(tmp_path))) == (
        "the process of the trial's rank 1 crashed: Segmentation fault (Python's stack of it is in the trial's "
        f"rank-1.crash) at {script}:4")
    # Ray's snippet of the rank goes when the summary keeps the text's end: the rank stays
    kept = crash.with_crash(_TRAIN_DIED, str(tmp_path))
    kept = kept[kept.index("The actor is dead"):]
    assert summary.error_line(kept).startswith("the process of the trial's rank 1 crashed: Segmentation fault")
    assert summary.error_line(crash.with_crash(_TRAIN_DIED, str(tmp_path / "none"))[-300:]).startswith(
        "the process of the trial's rank 1 died without a Python error")
    # rank 0's traceback in the study's code is where it lost its peer, not where rank 1 died
    lost = _TRAIN_DIED.replace("RuntimeError: [gloo", '  File "/home/me/study/train.py", line 42, in train_epoch\n'
                                                    "RuntimeError: [gloo")
    assert " at " not in summary.error_at(crash.with_crash(lost, str(tmp_path / "none")))
    # a warm group's rank: pool.py notes which one
    pooled = _DIED + "\n" + crash.RANK_NOTE.format(rank=3)
    assert summary.error_at(crash.with_crash(pooled, str(tmp_path))).startswith(
        "the process of the trial's rank 3 died without a Python error: killed")
    # a rank that ends without a crash leaves no file
    with output.rank_crash(str(tmp_path), 0):
        pass
    assert not (tmp_path / "rank-0.crash").exists()


def test_a_rank_or_trial_that_calls_os_exit_says_its_exit_code_and_where(tmp_path):
    """os._exit(3) ends a process at once, and Ray says only that the worker's connection
    ended (no exit code): the line said "died without a Python error: killed ... or it
    called os._exit()". The process now records the call, its code and where."""
    from hpoc.runtime import crash, summary

    script = tmp_path / "trainer.py"
    script.write_text("import os, sys\nfrom hpoc.runtime import output\n"
                      "with output.rank_crash(sys.argv[1], 1):\n    os._exit(3)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, str(script), str(tmp_path)], env=env).returncode == 3
    assert summary.error_at(crash.with_crash(_TRAIN_DIED, str(tmp_path))) == (
        "the process of the trial's rank 1 exited with code 3: it called os._exit(3) (Python's stack of it "
        f"is in the trial's rank-1.crash) at {script}:4")
    # a one-worker trial: at the end of its stderr
    script.write_text("import os, sys\nfrom hpoc.runtime import output\n"
                      "with output.kept(sys.argv[1]):\n    print('training', file=sys.stderr)\n    os._exit(7)\n")
    assert subprocess.run([sys.executable, str(script), str(tmp_path)], env=env).returncode == 7
    assert summary.error_at(crash.with_crash(_DIED, str(tmp_path))) == (
        "the trial's process exited with code 7: it called os._exit(7) (Python's stack of it is at the end "
        f"of the trial's stderr) at {script}:5")
    # a forked child (a DataLoader worker) ends by os._exit: not the trial's process
    script.write_text("import os, sys\nfrom hpoc.runtime import output\n"
                      "with output.rank_crash(sys.argv[1], 2):\n    pid = os.fork()\n"
                      "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n")
    assert subprocess.run([sys.executable, str(script), str(tmp_path)], env=env).returncode == 0
    assert not (tmp_path / "rank-2.crash").exists()


def test_a_trial_that_calls_exit_in_c_code_is_not_said_to_have_called_os_exit(tmp_path):
    """C's exit(3) (an extension's, or `ctypes.CDLL(None).exit(3)`) ends the process without
    Python: neither Ray nor the process records its code, and the line named only a kill or
    os._exit() (which the process records itself). It names C's exit() too."""
    from hpoc.runtime import crash, summary

    script = tmp_path / "trainer.py"
    script.write_text("import ctypes, sys\nfrom hpoc.runtime import output\n"
                      "with output.kept(sys.argv[1]):\n    ctypes.CDLL(None).exit(3)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, str(script), str(tmp_path)], env=env).returncode == 3
    assert summary.error_at(crash.with_crash(_DIED, str(tmp_path))) == (
        "the trial's process died without a Python error: killed (the kernel's OOM killer, a signal) "
        "or it exited outside Python (exit() in C code, os._exit())")


def test_a_warm_group_rank_ends_on_sigterm_and_says_so(tmp_path):
    """A warm group's rank runs its trials in threads of a Ray actor whose main thread waits
    in C++: Ray's SIGTERM handler never ran, and a rank sent SIGTERM (a `kill`, a memory
    watchdog) trained on. It now ends, naming SIGTERM and where its trial was."""
    from hpoc.runtime import crash, summary

    script = tmp_path / "rank.py"
    script.write_text(
        "import os, signal, sys, threading, time\nfrom hpoc.runtime import output, rank_term\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)  # Ray's, which never runs there\n"
        "rank_term.heed_sigterm()\n"
        "def trial():\n    with output.rank_crash(sys.argv[1], 1):\n"
        "        pid = os.fork()\n        if pid == 0:\n            time.sleep(1)\n            os._exit(0)\n"
        "        time.sleep(0.2)\n        os.kill(pid, signal.SIGTERM)  # a DataLoader worker's end: not the rank's\n"
        "        os.waitpid(pid, 0)\n        time.sleep(0.5)\n        print('alive', flush=True)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n        time.sleep(10)\n"
        "t = threading.Thread(target=trial)\nt.start()\nt.join()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout == "alive\n" and done.returncode == 143, (done.returncode, done.stdout, done.stderr)
    assert summary.error_at(crash.with_crash(_TRAIN_DIED, str(tmp_path))) == (
        "the process of the trial's rank 1 was terminated by SIGTERM: a `kill`, the job scheduler or a memory "
        f"watchdog sent it (Python's stack of it is in the trial's rank-1.crash) at {script}:17")


def test_a_rank_that_ray_ends_leaves_no_crash_file_and_a_kill_still_does(tmp_path):
    """Ray ends a worker whose owner died, or whose job ended (`ray.shutdown`), by a SIGTERM
    from its raylet, which then hangs up on it: each rank wrote "was terminated by SIGTERM"
    into its trial's rank-<k>.crash at a normal end of the experiment. A SIGTERM that the
    raylet's hangup follows leaves no crash file now; a `kill` mid-trial still does."""
    import signal
    import socket
    import tempfile
    import time

    from hpoc.runtime import crash, rank_term, summary

    script = tmp_path / "rank.py"
    script.write_text(
        "import signal, socket, sys, threading, time\nfrom hpoc.runtime import output, rank_term\n"
        "raylet = socket.socket(socket.AF_UNIX)\nraylet.connect(sys.argv[2])  # as Ray's worker does\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)  # Ray's, which never runs there\n"
        "rank_term.heed_sigterm(sys.argv[2])\n"
        "def trial():\n    with output.rank_crash(sys.argv[1], 1):\n"
        "        print('training', flush=True)\n        time.sleep(30)\n"
        "t = threading.Thread(target=trial)\nt.start()\nt.join()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    short = tempfile.mkdtemp(prefix="hpt", dir="/tmp")  # a socket's path: 107 bytes at most
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(os.path.join(short, "raylet"))
        server.listen()

        def rank(ray_ends: bool) -> tuple[int, float]:
            proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), os.path.join(short, "raylet")],
                                    env=env, stdout=subprocess.PIPE, text=True)
            try:
                conn, _ = server.accept()
                assert proc.stdout.readline() == "training\n"
                start = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                if ray_ends:  # the raylet's end of a worker: SIGTERM, then its hangup
                    time.sleep(0.05)
                    conn.close()
                code = proc.wait(timeout=30)
                return code, time.monotonic() - start
            finally:
                proc.kill()
                proc.wait()
                proc.stdout.close()

        code, took = rank(ray_ends=True)
        assert code == 143 and took < rank_term.RAY_HANGUP_S
        assert not (tmp_path / "rank-1.crash").exists()  # not even empty
        code, took = rank(ray_ends=False)  # a `kill`, the OOM watchdog: the raylet keeps the connection
        assert code == 143 and took >= rank_term.RAY_HANGUP_S
    finally:
        server.close()
        shutil.rmtree(short, ignore_errors=True)
    assert summary.error_at(crash.with_crash(_TRAIN_DIED, str(tmp_path))) == (
        "the process of the trial's rank 1 was terminated by SIGTERM: a `kill`, the job scheduler or a memory "
        f"watchdog sent it (Python's stack of it is in the trial's rank-1.crash) at {script}:10")


def test_a_trial_process_that_ray_says_got_sigterm_or_exited_is_said_so(tmp_path):
    """Ray's own words name a SIGTERM (its handler made the worker exit) or a worker's exit
    code: the line still said "died without a Python error: killed (...) or os._exit()"."""
    from hpoc.runtime import crash, summary

    ray_term = _DIED.replace("Worker unexpectedly exits with a connection error code 2. End of file. Some common "
                             "causes include: (1) the process was killed by the OOM killer ...",
                             "Worker exits unexpectedly by a signal. SystemExit is raised (sys.exit is called). "
                             "Exit code: 1. The process receives a SIGTERM.")
    assert ray_term != _DIED
    assert summary.error_at(crash.with_crash(ray_term, str(tmp_path))) == (
        "the trial's process was terminated by SIGTERM: a `kill`, the job scheduler or a memory watchdog sent it")
    ray_exit = _TRAIN_DIED.replace("SYSTEM_ERROR ...", "SYSTEM_ERROR Worker exit detail: Worker exits unexpectedly. "
                                   "Worker exits with an exit code 4.")
    assert summary.error_at(crash.with_crash(ray_exit, str(tmp_path))) == (
        "the process of the trial's rank 1 exited with code 4")
    # Ray's "connection error code 2" is no exit code
    assert summary.error_line(_DIED).startswith("the trial's process died without a Python error: killed")


def test_a_rank_the_oom_killer_ended_is_said_to_have_run_out_of_memory(tmp_path, monkeypatch):
    """A rank SIGKILLed by the kernel's OOM killer: the line listed the OOM killer among every
    way a process dies. The kernel's count of OOM kills on the rank's node rose while the
    trial ran: the trial's process notes it, and the line says so."""
    import ray
    from ray.exceptions import ActorDiedError

    from hpoc.runtime import crash, oom, summary

    # the count: the memory cgroup's (v2, v1), else the node's
    (tmp_path / "cgroup").write_text("0::/job_7/step_0\n")
    (tmp_path / "job_7" / "step_0").mkdir(parents=True)
    (tmp_path / "job_7" / "step_0" / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (tmp_path / "vmstat").write_text("nr_free_pages 1\noom_kill 9\n")
    assert oom.kills(str(tmp_path / "cgroup"), str(tmp_path), str(tmp_path / "vmstat")) == 1
    (tmp_path / "cgroup").write_text("4:memory:/job_7\n0::/\n")
    (tmp_path / "memory" / "job_7").mkdir(parents=True)
    (tmp_path / "memory" / "job_7" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert oom.kills(str(tmp_path / "cgroup"), str(tmp_path), str(tmp_path / "vmstat")) == 2
    assert oom.kills(str(tmp_path / "none"), str(tmp_path), str(tmp_path / "vmstat")) == 9
    assert oom.kills(str(tmp_path / "none"), str(tmp_path), str(tmp_path / "none")) is None

    # the note: only for a death on this node, when the count rose
    died = _DIED.replace("\tclass_name: ImplicitFunc\n", "\tclass_name: PoolWorker\n\tip: 10.0.0.5\n")
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.5")
    counts = iter([4])
    monkeypatch.setattr(oom, "kills", lambda: next(counts))
    exc = ActorDiedError()
    monkeypatch.setattr(ActorDiedError, "__str__", lambda self: died)
    crash.note_rank(exc, 1)
    oom.note_kill(exc, 3)
    text = "\n".join([died, *exc.__notes__])
    assert summary.error_at(crash.with_crash(text, str(tmp_path))) == (
        "the process of the trial's rank 1 was killed by the kernel's OOM killer (it killed a process on that "
        "node while the trial ran): give the trial more memory, or make it use less")
    calm = ActorDiedError()
    monkeypatch.setattr(oom, "kills", lambda: 3)
    oom.note_kill(calm, 3)  # no kill meanwhile
    monkeypatch.setattr(oom, "kills", lambda: 5)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.6")
    oom.note_kill(calm, 3)  # a kill, but on another node than the rank's
    assert not getattr(calm, "__notes__", [])


def test_an_error_whose_message_goes_on_after_a_colon_keeps_its_reason_on_the_line():
    """torchvision's download error in a trial: the line stopped at "Error downloading x.gz:",
    and the reason (no name lookup: a compute node without internet) was on the lines after."""
    from hpoc.runtime import summary

    text = ('Traceback (most recent call last):\n  File "trainer.py", line 5, in create_dataloaders\n'
            "RuntimeError: Error downloading train-images-idx3-ubyte.gz:\nTried http://x/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n\n")
    assert summary.error_line(text) == ("RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried "
                                        "http://x/, got: <urlopen error [Errno -2] Name or service not known>")
    assert summary.error_line("ValueError: bad:\n\nTraceback (most recent call last):\n") == "ValueError: bad:"


def test_an_error_line_joins_as_much_of_a_message_as_says_its_reason():
    """The real shapes: torchvision's two mirrors (the first one's reason is on the line), and
    Ray's storage error, whose settings after its colon hpoc's own sentence replaces."""
    from hpoc.runtime import summary

    mirrors = ("Traceback (most recent call last):\nRuntimeError: Error downloading train-images-idx3-ubyte.gz:\n"
               "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n<urlopen error [Errno -2] Name or "
               "service not known>\nTried http://yann.lecun.com/exdb/mnist/, got:\n<urlopen error [Errno -2] "
               "Name or service not known>\n")
    assert summary.error_line(mirrors) == (
        "RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried https://ossci-datasets.s3."
        "amazonaws.com/mnist/, got: <urlopen error [Errno -2] Name or service not known>")
    storage = ("Traceback (most recent call last):\nRuntimeError: Unable to set up cluster storage with the "
               "following settings:\nStorageContext<\n  storage_filesystem='local',\n  storage_fs_path='/r',\n"
               "  experiment_dir_name='s',\n  trial_dir_name='t',\n  current_checkpoint_index=0,\n>\n"
               "Check that all nodes in the cluster have read/write access to the configured storage path.\n")
    assert summary.error_line(storage).endswith("was it deleted or moved during the run?")
    assert summary.one_line(["Error downloading x.gz:", "  Tried a,", "got: b"]) == \
        "Error downloading x.gz: Tried a, got: b"


def test_a_logs_end_is_read_whatever_its_length(tmp_path):
    """One reader of a log's last bytes for the crash stack in a trial's stderr and the last
    words of a Ray node's log: a character the cut splits is replaced, not an error."""
    from hpoc.files import read_tail

    log = tmp_path / "log"
    assert read_tail(log, 10) is None
    log.write_bytes("ab€cd".encode())  # € is 3 bytes: the last 4 cut it
    assert read_tail(log, 4).endswith("\ufffdcd") and read_tail(log, 100) == "ab€cd"


def test_crash_blocks_that_end_out_of_order_leave_the_open_one_recording(tmp_path):
    """Two crash_stack blocks of one process (one inside the other, or two threads' that end
    out of order): the first to end cleared the process's record and pointed faulthandler
    back at the process's stderr, so an os._exit or a segfault of the block still open went
    unrecorded; and os._exit stayed replaced after both."""
    script = tmp_path / "blocks.py"
    script.write_text(
        "import faulthandler, os, sys\nfrom hpoc.runtime import output\n"
        "real = os._exit\n"
        "a = output.crash_stack(os.path.join(sys.argv[1], 'a'))\nb = output.crash_stack(os.path.join(sys.argv[1], 'b'))\n"
        "a.__enter__()\nb.__enter__()\na.__exit__(None, None, None)\n"
        "assert faulthandler.is_enabled()\n"
        "b.__exit__(None, None, None)\nassert os._exit is real and not faulthandler.is_enabled()\n"
        "with output.crash_stack(os.path.join(sys.argv[1], 'c')):\n"
        "    with output.crash_stack(os.path.join(sys.argv[1], 'd')):\n        pass\n"
        "    os._exit(5)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 5, done.stderr
    assert (tmp_path / "c").read_text().startswith("hpoc: exited with code 5: it called os._exit(5)")


def _one_worker_died(pid: int, ip: str = "10.0.0.5") -> str:
    """Ray's error.txt of a one-worker trial whose process (`pid`) died on node `ip`."""
    return _DIED.replace("\tclass_name: ImplicitFunc\n",
                         f"\tclass_name: ImplicitFunc\n\tpid: {pid}\n\tip: {ip}\n") + "\n"


def test_a_one_worker_trial_the_oom_killer_ended_is_said_to_have_run_out_of_memory(tmp_path):
    """A one-worker trial's own process SIGKILLed by the kernel's OOM killer got the generic
    "died without a Python error" line: the process that reads the kill counts (oom.py) for
    ranks is the one that died. The trial's process notes where its node's count stood; the
    driver, on the same node, sees it rose, and the line says out of memory with the hint.
    A real process, killed with SIGKILL while the (faked) count rises."""
    import signal

    from hpoc.runtime import crash, oom, summary

    (tmp_path / "cgroup").write_text("0::/job_7/step_0\n")
    events = tmp_path / "job_7" / "step_0" / "memory.events"
    events.parent.mkdir(parents=True)
    events.write_text("oom 0\noom_kill 2\n")
    trial = tmp_path / "trial"
    trial.mkdir()
    script = (f"import os, sys\nfrom hpoc.runtime import oom\n"
              f"oom.record({str(trial)!r}, cgroups={str(tmp_path / 'cgroup')!r}, root={str(tmp_path)!r}, "
              f"vmstat={str(tmp_path / 'none')!r})\nprint('recorded', flush=True)\nsys.stdin.read()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "recorded\n"
    events.write_text("oom 1\noom_kill 3\n")  # the kernel kills it for memory
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    error_file = trial / "error.txt"
    error_file.write_text(_one_worker_died(proc.pid))
    oom.note_trial_kill(str(error_file), str(trial))
    oom.note_trial_kill(str(error_file), str(trial))  # said once, whoever asks again
    text = error_file.read_text()
    assert text.count(crash.OOM_NOTE) == 1
    assert summary.error_at(crash.with_crash(text, str(trial))) == (
        "the trial's process was killed by the kernel's OOM killer (it killed a process on that node while "
        "the trial ran): give the trial more memory, or make it use less")

    # no kill meanwhile, another process's death, another node's: the line stays as it was
    for count, pid, host in [(2, proc.pid, None), (3, proc.pid + 1, None), (3, proc.pid, "elsewhere")]:
        events.write_text(f"oom_kill {count}\n")
        if host:
            record = json.loads((trial / oom.RECORD).read_text())
            (trial / oom.RECORD).write_text(json.dumps({**record, "host": host}))
        error_file.write_text(_one_worker_died(pid))
        oom.note_trial_kill(str(error_file), str(trial))
        assert crash.OOM_NOTE not in error_file.read_text(), (count, pid, host)
        assert summary.error_line(error_file.read_text()).startswith(
            "the trial's process died without a Python error")
    # a trial without a record (it died before it wrote one), or no error file
    oom.note_trial_kill(str(error_file), str(tmp_path / "none"))
    oom.note_trial_kill(None, str(trial))


@pytest.mark.ray
def test_a_one_worker_trial_the_oom_killer_ended_on_another_node_is_said_to_have_run_out_of_memory(tmp_path):
    """The kill count of a one-worker trial's node was read only where the driver runs: a
    trial killed for memory on another node got the generic "died" line. The driver reads
    the count on the trial's node (a Ray task there). Faked counter; the trial's record
    names another host, and this one-node cluster's node."""
    import ray

    from hpoc.runtime import crash, oom, summary

    events = tmp_path / "memory.events"
    trial = tmp_path / "trial"
    trial.mkdir()
    error_file = trial / "error.txt"
    s = session_mod.start_local(workdir=None, num_cpus=1)
    try:
        node = ray.get_runtime_context().get_node_id()
        (trial / oom.RECORD).write_text(json.dumps({"host": "elsewhere", "pid": 4242, "path": str(events),
                                                    "kills": 2, "node": node, "ip": "10.0.0.5"}))
        # no kill meanwhile; a process of the same pid on another node (an earlier attempt's record)
        for count, ip, noted in [(2, "10.0.0.5", False), (3, "10.0.0.6", False), (3, "10.0.0.5", True)]:
            events.write_text(f"oom 1\noom_kill {count}\n")
            error_file.write_text(_one_worker_died(4242, ip))
            oom.note_trial_kill(str(error_file), str(trial))
            oom.poll(10)  # an answer later than READ_NOW_S (a worker starting on a busy machine)
            assert (crash.OOM_NOTE in error_file.read_text()) is noted, (count, ip)
        assert summary.error_at(crash.with_crash(error_file.read_text(), str(trial))).startswith(
            "the trial's process was killed by the kernel's OOM killer")
    finally:
        s.close()


@pytest.mark.ray
def test_reading_another_nodes_oom_count_does_not_hold_the_drivers_loop(tmp_path, monkeypatch):
    """The count on another node was read with a blocking `ray.get` of up to 20 s, inside
    Tune's callback: a slow raylet stalled every trial's results meanwhile. The driver asks,
    goes on, and notes the kill when the answer comes (oom.poll, each step), for READ_S at
    most. The task's read hangs on a FIFO no one writes until the test says so."""
    import time

    import ray

    from hpoc.runtime import crash, oom

    fifo = tmp_path / "memory.events"
    os.mkfifo(fifo)
    trial, late = tmp_path / "trial", tmp_path / "late"
    s = session_mod.start_local(workdir=None, num_cpus=1)
    try:
        node = ray.get_runtime_context().get_node_id()
        for d in (trial, late):
            d.mkdir()
            (d / oom.RECORD).write_text(json.dumps({"host": "elsewhere", "pid": 4242, "path": str(fifo),
                                                    "kills": 2, "node": node, "ip": "10.0.0.5"}))
            (d / "error.txt").write_text(_one_worker_died(4242))
        t = time.monotonic()
        oom.note_trial_kill(str(trial / "error.txt"), str(trial))
        assert time.monotonic() - t < 5  # READ_NOW_S, and the task's start on a fresh worker
        assert crash.OOM_NOTE not in (trial / "error.txt").read_text()
        assert oom.poll() == []
        with open(fifo, "w") as fh:  # the node answers: a kill since the trial started
            fh.write("oom 1\noom_kill 3\n")
        deadline = time.monotonic() + 30
        noted: list[str] = []
        while not noted and time.monotonic() < deadline:
            noted = oom.poll()
            time.sleep(0.05)
        assert noted == [str(trial)]
        assert (trial / "error.txt").read_text().count(crash.OOM_NOTE) == 1

        # a node that never answers: dropped after READ_S, nothing noted
        monkeypatch.setattr(oom, "READ_S", 1.0)
        oom.note_trial_kill(str(late / "error.txt"), str(late))
        time.sleep(1.2)
        assert oom.poll() == [] and not oom._PENDING
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the hung read ends (EOF)
        os.close(fd)
        assert crash.OOM_NOTE not in (late / "error.txt").read_text()
    finally:
        s.close()


def test_an_oom_kill_read_late_from_another_node_is_said_at_the_next_step(tmp_path, monkeypatch):
    """The answer oom.poll noted after the trial's line went out is said in a line of its own
    at the driver's next step, and waited for (bounded) at the end, before the summary."""
    import io
    from types import SimpleNamespace

    from hpoc.runtime import crash, oom, watch

    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=["lr"]))
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / "error.txt").write_text(_one_worker_died(4242) + crash.OOM_NOTE + "\n")
    trial = SimpleNamespace(trial_id="ab12", status="ERROR", config={"lr": 0.1}, path=str(trial_dir),
                            local_path=None, error_file=str(trial_dir / "error.txt"))
    waits: list[float] = []
    answers = [[], [str(trial_dir)]]
    monkeypatch.setattr(oom, "poll", lambda wait=0.0: waits.append(wait) or answers.pop(0))
    watch._step_ended([trial])
    assert out.getvalue() == ""
    watch._events_class().on_experiment_end(watch._make_events(), [trial])
    assert waits == [0.0, oom.END_S]
    assert out.getvalue().strip() == (
        f"[hpoc] trial ab12 (lr=0.1): the trial's process was killed by the kernel's OOM killer (it killed a "
        f"process on that node while the trial ran): give the trial more memory, or make it use less "
        f"(details: {trial_dir}/error.txt)")


def test_a_late_oom_answer_notes_only_the_failure_it_was_asked_about(tmp_path):
    """An answer that comes after the trial failed again (its retry) is not this failure's."""
    from hpoc.runtime import crash, oom

    error_file = tmp_path / "error.txt"
    first = "Failure # 1 (occurred at 2026-01-01_00-00-00)\n" + _one_worker_died(4242)
    error_file.write_text(first)
    from hpoc.runtime.retry import last_failure

    asked = last_failure(str(error_file))
    assert oom._note(str(error_file), asked) and not oom._note(str(error_file), asked)  # once
    assert error_file.read_text().count(crash.OOM_NOTE) == 1
    error_file.write_text(first + "Failure # 2 (occurred at 2026-01-01_00-01-00)\n" + _one_worker_died(4343))
    assert not oom._note(str(error_file), asked)
    assert crash.OOM_NOTE not in error_file.read_text()


def test_an_oom_kill_read_late_reaches_the_trials_stored_error_txt(tmp_path, monkeypatch):
    """Tune's error.txt is its staging folder's (the run's temp dir), copied to the study's
    folder when Tune saves the experiment; the last copy is made before the end's callbacks.
    A kill noted at the end (oom.END_S) stayed in the staging copy, deleted with the temp
    dir: `hpoc results` (the study's folder) never said out of memory."""
    import time

    from hpoc.runtime import crash, oom

    staging, stored = tmp_path / "staging" / "trial", tmp_path / "study" / "trial"
    for d in (staging, stored):
        d.mkdir(parents=True)
        (d / "error.txt").write_text(_one_worker_died(4242))  # Tune's last copy
    stored_before_sync = tmp_path / "study" / "fresh"
    stored_before_sync.mkdir()
    (staging.parent / "fresh").mkdir()
    (staging.parent / "fresh" / "error.txt").write_text(_one_worker_died(4343))  # not copied yet
    from hpoc.runtime.retry import last_failure

    asked = [(stored, staging / "error.txt"), (stored_before_sync, staging.parent / "fresh" / "error.txt")]
    for directory, error in asked:
        oom._PENDING[str(directory)] = (object(), str(error), last_failure(str(error)), 2, time.monotonic() + 20)
    monkeypatch.setattr(oom, "_ready", lambda refs, timeout: refs)
    monkeypatch.setattr(oom, "_answer", lambda ref: 3)
    assert sorted(oom.poll(oom.END_S)) == sorted([str(stored), str(stored_before_sync)])
    for directory, error in asked:
        assert (directory / "error.txt").read_text() == error.read_text()
        assert error.read_text().count(crash.OOM_NOTE) == 1


def test_trials_dying_together_on_a_slow_node_hold_the_drivers_loop_once(tmp_path, monkeypatch):
    """Each dead trial's count on another node was waited for READ_NOW_S in Tune's callback:
    a node whose cgroup's OOM killer ended 16 trials at once, its raylet slow to start the
    readers, held the driver's loop 8 s. With an answer still pending, the next ask waits
    for none: it is noted at a later step (oom.poll)."""
    from hpoc.runtime import oom

    waits: list[float] = []
    monkeypatch.setattr(oom, "ask_on", lambda node, path: object())
    monkeypatch.setattr(oom, "_ready", lambda refs, timeout: waits.append(timeout) or [])
    monkeypatch.setattr(oom, "_PENDING", {})
    for n in range(3):
        trial = tmp_path / f"trial{n}"
        trial.mkdir()
        (trial / oom.RECORD).write_text(json.dumps({"host": "elsewhere", "pid": 4242, "path": "/x",
                                                    "kills": 2, "node": "n1", "ip": "10.0.0.5"}))
        (trial / "error.txt").write_text(_one_worker_died(4242))
        oom.note_trial_kill(str(trial / "error.txt"), str(trial))
    assert waits == [oom.READ_NOW_S, 0, 0] and len(oom._PENDING) == 3
