"""`hpoc data`: fetching datasets on a machine with internet (here: a local web server)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading

import pytest

from hpoc.cli import main
from hpoc.commands import data as data_cmd
from runtime_plans import digit_images, fashion_files

FILES = fashion_files(n_train=30, n_test=10)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A web server with gzip'd Fashion-MNIST-format files, as torchvision's mirror."""
    from torchvision.datasets import FashionMNIST

    served = tmp_path / "mirror"
    served.mkdir()
    resources = []
    for name, payload in FILES.items():
        blob = gzip.compress(payload, mtime=0)
        (served / f"{name}.gz").write_bytes(blob)
        resources.append((f"{name}.gz", hashlib.md5(blob).hexdigest()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    yield server
    server.shutdown()


def test_fetch_downloads_into_torchvisions_layout_and_the_getter_reads_it(mirror, tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["data", "fetch", "fashion-mnist", "--root", str(root)]) == 0
    raw = root / "FashionMNIST" / "raw"
    assert f"fashion-mnist: ready in {raw}" in capsys.readouterr().out
    for name, payload in FILES.items():
        assert (raw / name).read_bytes() == payload  # extracted, byte for byte

    from hpoc.runtime import pipeline

    getter = pipeline.import_target("data:FashionMNISTGetter",
                                    str(__import__("pathlib").Path(__file__).resolve().parent.parent
                                        / "examples" / "fashion_mnist"))(root=str(root))
    train, test = getter.execute()
    assert (len(train), len(test)) == (30, 10)


def test_fetch_replaces_mnist_copied_under_fashion_mnist_names(mirror, tmp_path, capsys):
    """torchvision's download skips raw files that exist, whole ones included: MNIST's files
    copied under Fashion-MNIST's names stayed after a fetch."""
    root = tmp_path / "data"
    assert main(["data", "fetch", "fashion-mnist", "--root", str(root)]) == 0
    raw = root / "FashionMNIST" / "raw"
    whole = {f.name: f.read_bytes() for f in raw.iterdir() if not f.name.endswith(".gz")}
    (raw / "train-images-idx3-ubyte").write_bytes(digit_images())
    assert main(["data", "fetch", "fashion-mnist", "--root", str(root)]) == 0
    assert {f.name: f.read_bytes() for f in raw.iterdir() if not f.name.endswith(".gz")} == whole


def test_fetch_without_a_reachable_mirror_explains_where_to_run_it(monkeypatch, tmp_path, capsys):
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    assert main(["data", "fetch", "fashion-mnist", "--root", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "cannot fetch `fashion-mnist`" in err and "login node" in err
    assert "Traceback" not in err


def test_list_names_the_known_datasets(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in data_cmd.DATASETS)


def test_fetch_replaces_a_file_cut_short_and_idx_problem_says_why(mirror, tmp_path, capsys):
    """torchvision's download skips raw files that exist: a file cut short (a copy or an
    extraction interrupted) stayed, and `fetch` said "ready"."""
    root = tmp_path / "data"
    assert main(["data", "fetch", "fashion-mnist", "--root", str(root)]) == 0
    images = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    whole = images.read_bytes()
    assert data_cmd.idx_problem(images) is None
    images.write_bytes(whole[:100])
    assert data_cmd.idx_problem(images) == f"{images} is cut short (100 bytes; its header says {len(whole)})"
    assert main(["data", "fetch", "fashion-mnist", "--root", str(root)]) == 0
    assert images.read_bytes() == whole
    images.write_bytes(b"PK\x03\x04" + whole[4:])
    assert "is not an IDX file of bytes (its header is 504b0304)" in data_cmd.idx_problem(images)


def test_fetch_gives_up_on_a_mirror_that_never_answers(monkeypatch, tmp_path, capsys):
    """Behind a firewall or a stalled proxy, torchvision's download (no timeout) waited for
    ever: `hpoc data fetch` on a compute node hung instead of saying to use a login node."""
    import socket

    from torchvision.datasets import FashionMNIST

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    held: list[socket.socket] = []

    def hold_then_hang_up() -> None:  # so that the test ends, failing, without the timeout
        conn, _ = silent.accept()
        held.append(conn)
        threading.Event().wait(20)
        conn.close()

    threading.Thread(target=hold_then_hang_up, daemon=True).start()
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{silent.getsockname()[1]}/"])
    monkeypatch.setattr(data_cmd, "TIMEOUT", 0.5, raising=False)
    try:
        assert main(["data", "fetch", "fashion-mnist", "--root", str(tmp_path / "d")]) == 1
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert "timed out" in err and "login node" in err
    assert socket.getdefaulttimeout() is None  # the process's default is put back


def test_fetch_into_a_root_that_is_a_file_does_not_blame_the_network(tmp_path, capsys):
    """`--root` naming a file (the downloaded archive): the advice was to find internet."""
    archive = tmp_path / "fashion.tar.gz"
    archive.write_bytes(b"")
    assert main(["data", "fetch", "fashion-mnist", "--root", str(archive)]) == 1
    err = capsys.readouterr().err
    assert f"cannot make the directory {archive}" in err and "internet" not in err


def test_fetching_a_bundled_dataset_makes_no_directory(tmp_path, capsys):
    """`digits` ships with scikit-learn: `fetch digits --root d` made an empty `d`."""
    root = tmp_path / "d"
    assert main(["data", "fetch", "digits", "--root", str(root)]) == 0
    assert not root.exists()
    assert capsys.readouterr().out == "digits: bundled with scikit-learn: nothing to fetch (--root is not used)\n"


def test_fetch_without_the_library_says_to_install_it(monkeypatch, tmp_path, capsys):
    """A Python without scikit-learn (or torchvision) printed a traceback."""
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)  # import fails
    assert main(["data", "fetch", "digits", "--root", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "cannot fetch `digits`" in err and "install scikit-learn" in err and "internet" not in err


def test_fetch_expands_the_root_as_the_getters_do(mirror, tmp_path, monkeypatch, capsys):
    """`--root '$SCRATCH/x'` (quoted: the shell left it) is where a getter given that root
    looks, not a directory named `$SCRATCH` here."""
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "fetch", "fashion-mnist", "--root", "$SCRATCH/fmnist"]) == 0
    raw = tmp_path / "scratch" / "fmnist" / "FashionMNIST" / "raw"
    assert f"ready in {raw}" in capsys.readouterr().out
    assert not (tmp_path / "$SCRATCH").exists()


def test_fetch_refuses_a_root_with_an_unset_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HPOC_NOT_SET_ANYWHERE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["data", "fetch", "fashion-mnist", "--root", "$HPOC_NOT_SET_ANYWHERE/x"]) == 1
    err = capsys.readouterr().err
    assert "`$HPOC_NOT_SET_ANYWHERE`, which is not set here" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("given", ["FashionMNIST", "fashion_mnist", "Fashion-MNIST"])
def test_fetch_takes_the_dataset_as_torchvision_and_getters_name_it(mirror, tmp_path, capsys, given):
    """`hpoc data fetch FashionMNIST` (torchvision's class, the getter's folder) was refused:
    "invalid choice: 'FashionMNIST' (choose from 'digits', 'fashion-mnist', 'mnist')"."""
    root = tmp_path / "data"
    assert main(["data", "fetch", given, "--root", str(root)]) == 0
    assert f"fashion-mnist: ready in {root / 'FashionMNIST' / 'raw'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "fetch", "cifar10", "--root", str(root)])
    assert "invalid choice: 'cifar10'" in capsys.readouterr().err
