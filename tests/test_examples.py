"""The shipped examples: digits end to end through the CLI, Fashion-MNIST's real loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpoc.runtime import pipeline
from runtime_plans import digit_images, write_fashion

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
torch.set_num_threads(1)


def _copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    target.mkdir(parents=True)
    for f in (EXAMPLES / name).iterdir():
        if f.is_file() and f.suffix in (".py", ".hpo"):
            shutil.copy(f, target / f.name)
    return target


def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_memory_monitor_refresh_ms="0")
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.mark.ray
def test_hpoc_run_digits_local_finds_a_good_model_in_minutes(tmp_path):
    study = _copy_example("digits", tmp_path)
    home = tmp_path / "home"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hpoc", "run", str(study / "study.hpo"), "--local"],
                          env=dict(_env(), HOME=str(home)), capture_output=True, text=True,
                          timeout=300)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads((study / "results" / "digits" / "summary.json").read_text())
    assert summary["num_trials"] == 6 and summary["status_counts"] == {"TERMINATED": 6}
    assert summary["best"]["metrics"]["val_accuracy"] >= 0.9
    assert f"best trial {summary['best']['trial_id']}: val_accuracy=" in done.stdout
    for trial in summary["trials"]:  # `momentum` exists exactly when the optimizer is sgd
        assert ("momentum" in trial["config"]) == (trial["config"]["optimizer"] == "sgd")
    assert took < 180, took
    assert "Traceback" not in done.stderr
    assert not (home / ".ray").exists()  # the local Ray's token stays in its temp dir


def test_digits_pipeline_splits_the_real_dataset():
    plan = {"source": {"workdir": str(EXAMPLES / "digits")},
            "pipeline": {"getter": {"target": "data:DigitsGetter", "args": {}},
                         "splitter": {"target": "data:DigitsSplitter",
                                      "args": {"train_proportion": 0.7, "validation_proportion": 0.2}},
                         "trainer": None}}
    train, val, test = pipeline.load_data(plan)
    assert len(train[1]) + len(val[1]) + len(test[1]) == 1797
    assert train[0].shape[1:] == (1, 8, 8) and float(train[0].max()) == 1.0
    assert len(val[1]) == round(0.2 * 1797)
    from sklearn.datasets import load_digits

    # the splits partition the dataset: every image once, none lost or repeated
    original = sorted(map(tuple, (torch.tensor(load_digits().images) / 16.0).flatten(1).tolist()))
    parts = sorted(map(tuple, torch.cat([train[0], val[0], test[0]]).flatten(1).tolist()))
    assert parts == original


def _fashion_plan(root: str) -> dict:
    return {"source": {"workdir": str(EXAMPLES / "fashion_mnist")},
            "pipeline": {"getter": {"target": "data:FashionMNISTGetter", "args": {"root": root}},
                         "splitter": {"target": "data:FashionMNISTSplitter",
                                      "args": {"train_proportion": 0.75, "validation_proportion": 0.25}},
                         "trainer": {"target": "trainer:FashionTrainer", "args": {}}}}


def test_fashion_mnist_goes_through_torchvisions_own_loader(tmp_path):
    write_fashion(tmp_path / "fm", n_train=64, n_test=16)
    (xt, yt), (xv, yv), (xs, ys) = pipeline.load_data(_fashion_plan(str(tmp_path / "fm")))
    assert (len(yt), len(yv), len(ys)) == (48, 16, 16)
    assert xt.shape[1:] == (1, 28, 28) and xt.dtype == torch.uint8 and yt.dtype == torch.int64
    assert int(xt.max()) == 250  # the pixels of the files, not a transformed copy

    trainer = pipeline.import_target("trainer:FashionTrainer", str(EXAMPLES / "fashion_mnist"))()
    history = trainer.run_local({"batch_size": 16, "learning_rate": 1e-3, "epochs": 1},
                                ((xt, yt), (xv, yv)), directory=tmp_path / "run")
    (report,) = history
    assert report["epoch"] == 1 and 0 <= report["val_accuracy"] <= 1 and report["val_loss"] > 0
    assert trainer.model.conv1.kernel_size == (7, 7) and trainer.model.conv1.stride == (1, 1)


def test_missing_fashion_mnist_is_one_clear_error_naming_the_fetch_command(tmp_path):
    study = _copy_example("fashion_mnist", tmp_path)
    done = subprocess.run([sys.executable, "-m", "hpoc", "run", str(study / "study.hpo"), "--local"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    root = study / "data" / "fashion-mnist"  # the spec's relative root, from its directory
    assert f"hpoc data fetch fashion-mnist --root {root}" in done.stderr
    assert "getter `data:FashionMNISTGetter`" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (study / "ray_checkpoints").exists()


def _fashion_error(root: Path) -> str:
    getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / "fashion_mnist"))
    with pytest.raises(FileNotFoundError) as caught:
        getter(root=str(root)).execute()
    message = str(caught.value)
    assert "nodes cannot download it" in message  # whichever way it is missing
    assert "on a login node: hpoc data fetch fashion-mnist --root " in message
    return message


def test_fashion_mnist_unpacked_in_the_wrong_place_says_where_the_files_are(tmp_path):
    """Users unpack one level too deep or too shallow, copy the .gz files only, or fetch
    MNIST: the getter said only "not there, fetch it", which downloads again."""
    write_fashion(tmp_path / "deep" / "fashion")
    assert f"the files are in {tmp_path / 'deep' / 'fashion' / 'FashionMNIST' / 'raw'}: set the " \
           f"getter's root to {tmp_path / 'deep' / 'fashion'}" in _fashion_error(tmp_path / "deep")

    flat = tmp_path / "flat"  # the raw files straight in the root
    write_fashion(tmp_path / "w").rename(flat)
    assert f"the files are in {flat}: torchvision reads them only from " \
           f"{flat / 'FashionMNIST' / 'raw'} (move them there)" in _fashion_error(flat)

    gz = write_fashion(tmp_path / "gz")
    for f in gz.iterdir():
        if not f.name.endswith(".gz"):
            f.unlink()
    assert f"{gz} holds .gz files: torchvision reads them decompressed" \
        in _fashion_error(tmp_path / "gz")

    write_fashion(tmp_path / "mnist").parent.rename(tmp_path / "mnist" / "MNIST")
    assert f"{tmp_path / 'mnist' / 'MNIST' / 'raw'} holds MNIST, another dataset" \
        in _fashion_error(tmp_path / "mnist")

    assert "the files are in" not in _fashion_error(tmp_path / "empty" / "nothing")


def test_mnist_copied_under_fashion_mnist_names_is_refused_by_both_getters(tmp_path):
    """MNIST and Fashion-MNIST share names, sizes and format: a copy of MNIST in
    FashionMNIST/raw passed `check()` and every trial trained on digits without a word."""
    raw = write_fashion(tmp_path / "data")
    for example in ("fashion_mnist", "itwinai"):
        getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / example))
        getter(root=str(tmp_path / "data")).check()  # real Fashion-MNIST-format images pass
    (raw / "train-images-idx3-ubyte").write_bytes(digit_images())
    for example in ("fashion_mnist", "itwinai"):
        getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / example))
        with pytest.raises(OSError) as caught:
            getter(root=str(tmp_path / "data")).check()
        message = str(caught.value)
        assert f"{raw / 'train-images-idx3-ubyte'} is not Fashion-MNIST: 94% of its pixels are blank " \
               "(mean 12/255), as in MNIST's handwritten digits" in message, message
        assert "on a login node" in message and "hpoc data fetch fashion-mnist --root" in message


@pytest.mark.parametrize("labels", [50, 80])
def test_fashion_mnist_labels_and_images_of_different_counts_are_refused_as_damaged(tmp_path, labels):
    """Each file whole, but 64 images and 50 labels: torchvision pairs them by index, and the
    splitter silently dropped the images without a label (with more labels, an IndexError)."""
    import numpy as np
    from runtime_plans import idx_bytes

    raw = write_fashion(tmp_path / "data", n_train=64, n_test=16)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(labels, np.uint8)))
    with pytest.raises(pipeline.PipelineError) as caught:
        pipeline.load_data(_fashion_plan(str(tmp_path / "data")))
    message = str(caught.value)
    assert f"{raw / 'train-images-idx3-ubyte'} holds 64 images and {raw / 'train-labels-idx1-ubyte'} " \
           f"{labels} labels" in message, message
    assert "hpoc data fetch fashion-mnist --root" in message


def test_fashion_mnist_in_torchvisions_older_processed_layout_is_accepted_as_torchvision_does(tmp_path):
    """torchvision 0.29 still reads `FashionMNIST/processed/{training,test}.pt`, before raw/;
    `check()` (the login node's preflight) refused that directory as missing."""

    processed = tmp_path / "old" / "FashionMNIST" / "processed"
    processed.mkdir(parents=True)
    for name, n in (("training.pt", 8), ("test.pt", 4)):
        torch.save((torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n) % 10), processed / name)
    getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / "fashion_mnist"))(root=str(tmp_path / "old"))
    getter.check()
    train, test = getter.execute()
    assert (len(train), len(test)) == (8, 4)

    (processed / "training.pt").write_bytes(b"cut")  # torchvision would load it, raw/ or not
    with pytest.raises(OSError) as caught:
        getter.check()
    assert f"{processed / 'training.pt'} cannot be loaded" in str(caught.value)
    assert f"torchvision reads {processed} before raw/: remove it" in str(caught.value)

    (processed / "training.pt").unlink()  # half the layout: torchvision looks in raw/
    assert f"{processed} holds test.pt only: torchvision reads that layout with training.pt and test.pt " \
           "both there" in _fashion_error(tmp_path / "old")


def test_fashion_mnist_root_expands_home_and_variables_as_storage_path_does(tmp_path, monkeypatch):
    """`root = "$SCRATCH/fashion"` was read as a directory named `$SCRATCH` in the study's
    directory, where `storage.path` of the same spec expands it."""
    write_fashion(tmp_path / "scratch" / "fashion", n_train=8, n_test=4)
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("HOME", str(tmp_path / "scratch"))
    getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / "fashion_mnist"))
    for root in ("$SCRATCH/fashion", "~/fashion"):
        train, test = getter(root=root).execute()
        assert (len(train), len(test)) == (8, 4)


def test_fashion_mnist_fetch_command_it_prints_can_be_pasted_with_spaces_in_the_root(tmp_path):
    """The advice named `--root /my data/fm` unquoted: pasted, it fetched into `/my`."""
    import shlex

    root = tmp_path / "my data" / "fm"
    message = _fashion_error(root)
    command = message[message.index("hpoc data fetch"):]
    assert shlex.split(command) == ["hpoc", "data", "fetch", "fashion-mnist", "--root", str(root)]


def test_fashion_mnist_is_not_said_to_be_in_a_sibling_studys_directory(tmp_path):
    """Above the root only a root one level too deep is looked for: files three levels down
    beside it are another study's, not these misplaced."""
    write_fashion(tmp_path / "other-study")
    assert "the files are in" not in _fashion_error(tmp_path / "this-study-data")
    write_fashion(tmp_path / "data")  # fetched with --root data, the spec says data/fashion-mnist
    assert f"set the getter's root to {tmp_path / 'data'}" \
        in _fashion_error(tmp_path / "data" / "fashion-mnist")


def test_itwinai_example_getter_says_where_misplaced_data_is_and_quotes_the_root(tmp_path):
    """The itwinai example's getter gives the same advice as the Fashion-MNIST one."""
    import shlex

    write_fashion(tmp_path / "my data" / "fm")
    getter = pipeline.import_target("data:FashionMNISTGetter", str(EXAMPLES / "itwinai"))
    with pytest.raises(FileNotFoundError) as caught:
        getter(root=str(tmp_path / "my data")).execute()
    message = str(caught.value)
    assert f"set the getter's root to {tmp_path / 'my data' / 'fm'}" in message
    assert shlex.split(message[message.index("hpoc data fetch"):])[-1] == str(tmp_path / "my data")
