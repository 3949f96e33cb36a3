"""HP804 for `gpus_per_worker` of 2 or more with a trainer installed outside the spec's
directory: the check said "leaves 1 of its GPUs idle" of trainers it never read (an
installed package, a compiled module, one in a zip, one re-exported by a package's
`__init__`, one only the cluster has), model-parallel ones included."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

from hpo_util import diagnostics, installed, own_trainer

SPLIT = own_trainer(body="    def create_model(self, config):\n        return load(device_map='auto')\n")
ONE_GPU = own_trainer()


def hp804(tmp_path: Path, target: str, files: dict[str, str | bytes]) -> list:
    """HP804 of a study on `gpus_per_worker = 2` whose trainer `target` is installed in a
    folder of its own holding `files`; the spec's directory is empty."""
    site = tmp_path / "site"
    for name, text in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    spec = (f'study "t"\npipeline {{ trainer = {target} }}\nobjective minimize val_loss\n'
            "resources { gpus_per_worker = 2 }\n")
    (tmp_path / "spec").mkdir()
    importlib.invalidate_caches()
    with installed(site):
        return [w for w in diagnostics(spec, str(tmp_path / "spec")) if w.code == "HP804"]


def test_an_installed_trainer_that_splits_its_model_is_read_and_not_warned(tmp_path: Path) -> None:
    assert hp804(tmp_path, "gpu_split_pkg.trainer:T", {"gpu_split_pkg/__init__.py": "",
                                                        "gpu_split_pkg/trainer.py": SPLIT}) == []


def test_an_installed_trainer_in_a_namespace_package_is_read(tmp_path: Path) -> None:
    assert hp804(tmp_path, "gpu_ns_pkg.trainer:T", {"gpu_ns_pkg/trainer.py": SPLIT}) == []


def test_a_trainer_re_exported_by_an_installed_package_is_read_where_it_is_defined(tmp_path: Path) -> None:
    files = {"gpu_reexp_pkg/__init__.py": "from .impl import T\n", "gpu_reexp_pkg/impl.py": SPLIT}
    assert hp804(tmp_path, "gpu_reexp_pkg:T", files) == []


def test_an_installed_one_gpu_trainer_is_still_told_its_gpu_idles(tmp_path: Path) -> None:
    files = {"gpu_one_pkg/__init__.py": "from .impl import T\n", "gpu_one_pkg/impl.py": ONE_GPU}
    (w,) = hp804(tmp_path, "gpu_one_pkg:T", files)
    assert w.message == ("each worker trains on one GPU (a process of DDP or DeepSpeed uses one), so "
                         "`gpus_per_worker = 2` leaves 1 of its GPUs idle")


def unread(w) -> tuple[str, str]:
    """(why, what the help adds) of an HP804 said of a trainer hpoc could not read."""
    head = ("each worker trains on one GPU (a process of DDP or DeepSpeed uses one), so `gpus_per_worker = 2` "
            "may leave 1 of its GPUs idle: hpoc could not read ")
    assert w.message.startswith(head), w.message
    assert w.help.endswith("; if the trainer spreads its model over the worker's GPUs itself, "
                           "ignore this warning"), w.help
    return w.message[len(head):], w.help


def test_a_compiled_trainer_is_warned_as_unread(tmp_path: Path) -> None:
    (w,) = hp804(tmp_path, "gpu_so_pkg.trainer:T", {"gpu_so_pkg/__init__.py": "",
                                                     "gpu_so_pkg/trainer.cpython-311-x86_64-linux-gnu.so": b"\0ELF"})
    why, _ = unread(w)
    assert why == ("the trainer's module `gpu_so_pkg.trainer` (compiled: "
                   "gpu_so_pkg/trainer.cpython-311-x86_64-linux-gnu.so) to see whether it spreads its model over them")


def test_a_trainer_in_a_zip_is_warned_as_unread(tmp_path: Path) -> None:
    archive = tmp_path / "gpu_zip.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("gpu_zip_pkg/__init__.py", "")
        z.writestr("gpu_zip_pkg/trainer.py", SPLIT)
    (tmp_path / "spec").mkdir()
    importlib.invalidate_caches()
    spec = ('study "t"\npipeline { trainer = gpu_zip_pkg.trainer:T }\nobjective minimize val_loss\n'
            "resources { gpus_per_worker = 2 }\n")
    with installed(archive):
        (w,) = [w for w in diagnostics(spec, str(tmp_path / "spec")) if w.code == "HP804"]
    assert unread(w)[0] == (f"the trainer's module `gpu_zip_pkg.trainer` (in a zip archive: {archive}) "
                            "to see whether it spreads its model over them")


def test_a_trainer_re_exported_by_star_import_is_warned_as_unread(tmp_path: Path) -> None:
    files = {"gpu_star_pkg/__init__.py": "from ._impl import *\n", "gpu_star_pkg/_impl.py": ONE_GPU}
    (w,) = hp804(tmp_path, "gpu_star_pkg:T", files)
    assert unread(w)[0] == ("the trainer's module `gpu_star_pkg` (it does not say where `T` comes from) "
                            "to see whether it spreads its model over them")


def test_a_trainer_only_the_cluster_has_is_warned_as_unread(tmp_path: Path) -> None:
    (w,) = hp804(tmp_path, "gpu_nowhere_pkg.trainer:T", {})
    assert unread(w)[0] == ("the trainer's module `gpu_nowhere_pkg.trainer` (not found here) "
                            "to see whether it spreads its model over them")


def test_a_trainer_importing_more_modules_than_the_bound_reads_no_more(tmp_path: Path, monkeypatch) -> None:
    # the walk stops at its bound of modules (`hpoc check` stays instant on a big installed
    # package) and says it stopped, not that the GPUs surely idle
    import hpoc.compiler.trainer_hooks as hooks
    parsed = []
    monkeypatch.setattr(hooks, "parse_module", lambda path: parsed.append(path) or real(path))
    real = importlib.import_module("hpoc.compiler.pysource").parse_module
    files = {"gpu_big_pkg/__init__.py": "",
             "gpu_big_pkg/trainer.py": ONE_GPU + "".join(f"from . import m{i}\n" for i in range(60))}
    files.update({f"gpu_big_pkg/m{i}.py": "import os\n" for i in range(60)})
    (w,) = hp804(tmp_path, "gpu_big_pkg.trainer:T", files)
    assert len(parsed) <= hooks._MODULES_READ
    assert unread(w)[0] == (f"all the modules the trainer imports (more than {hooks._MODULES_READ}, or 1 MiB) "
                            "to see whether it spreads its model over them")
    # nor more than its bound of source: a few huge modules
    parsed.clear()
    files = {"gpu_huge_pkg/__init__.py": "", "gpu_huge_pkg/trainer.py": ONE_GPU + "from . import a, b\n",
             "gpu_huge_pkg/a.py": "x = 1\n" * 200_000, "gpu_huge_pkg/b.py": "x = 1\n" * 200_000}
    (w,) = hp804(tmp_path / "huge", "gpu_huge_pkg.trainer:T", files)
    assert len(parsed) == 1 and unread(w)[0].startswith("all the modules the trainer imports")


def test_a_study_without_a_trainer_is_not_told_of_an_unread_module_of_no_name() -> None:
    # HP205 says the trainer is missing; HP804 said "could not read the trainer's module ``"
    spec = 'study "t"\nobjective minimize val_loss\nresources { gpus_per_worker = 2 }\n'
    (w,) = [d for d in diagnostics(spec) if d.code == "HP804"]
    assert w.message == ("each worker trains on one GPU (a process of DDP or DeepSpeed uses one), so "
                         "`gpus_per_worker = 2` leaves 1 of its GPUs idle")
