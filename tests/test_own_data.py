"""A researcher's own data in the shapes it comes in: what hpoc's loop batches, and what
it refuses as the data loads (in the data's terms, not as an error from inside torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hpoc
from hpoc.runtime import pipeline
from hpoc.runtime.batches import as_tensors
from hpoc.runtime.trainer import TrainerError


def test_read_only_arrays_are_batched_in_place_not_copied_per_trial():
    """Arrays come out of Ray's object store read-only; each trial copied them, so every
    running trial held its own copy of the data beside the shared one."""
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    x.flags.writeable = y.flags.writeable = False
    tx, ty = as_tensors((x, y))
    assert np.shares_memory(tx.numpy(), x) and np.shares_memory(ty.numpy(), y)


def test_reversed_arrays_are_data_too():
    """`x[::-1]` (newest first) failed every trial: torch takes no negative strides."""
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    tx, ty = as_tensors((x[::-1], y[::-1]))
    assert tx[0].tolist() == [38.0, 39.0] and ty[0] == 19


class _Linear(hpoc.Trainer):
    def create_model(self, config):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(3))


PLAN = {"pipeline": {"getter": {"target": "data:Getter"}}, "training": {}}
CONFIG = {"lr": 0.01, "batch_size": 8, "epochs": 1}
rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4)).astype(np.float32)
Y = rng.integers(0, 3, 40)


def _split_refused(train, val):
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.require_datasets(_Linear, (train, val, None), PLAN)
    return str(info.value)


def test_a_dict_of_arrays_as_a_split_is_refused_naming_its_keys(tmp_path):
    """`{"x": X, "y": y}` (or scikit-learn's Bunch) failed every trial with `KeyError: 1`
    from inside torch's DataLoader."""
    said = _split_refused({"x": X[:32], "y": Y[:32]}, (X[32:], Y[32:]))
    assert said.startswith("getter `data:Getter` returned a train split hpoc cannot batch: it is a dict "
                           "(keys x, y)"), said
    assert "(d['x'], d['y'])" in said
    bunch = {"data": X[32:], "target": Y[32:], "DESCR": "digits"}
    assert "validation split" in _split_refused((X[:32], Y[:32]), bunch)
    assert "`(d.data, d.target)`" in _split_refused((X[:32], Y[:32]), bunch)
    with pytest.raises(TrainerError, match=r"^the train split cannot be batched: it is a dict"):
        _Linear().run_local(CONFIG, ({"x": X[:32], "y": Y[:32]}, (X[32:], Y[32:])), directory=tmp_path)


def test_a_whole_dataframe_as_a_split_is_refused_naming_a_target_column():
    """A DataFrame read from a CSV, label column and all: `KeyError: 21` from pandas."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=list("abcd")).assign(species=Y)
    said = _split_refused(df[:32], df[32:])
    assert "it is one pandas DataFrame (columns a, b, c, d, species)" in said
    assert "`(df.drop(columns=['species']), df['species'])`" in said


def test_inputs_and_targets_as_python_lists_are_refused_not_read_as_two_samples():
    """`(x.tolist(), y.tolist())`: torch read the tuple as a dataset of two samples and
    failed to collate "must be real number, not list"."""
    said = _split_refused((X[:32].tolist(), Y[:32].tolist()), (X[32:], Y[32:]))
    assert "its parts are Python lists of 32 rows, which torch reads as a dataset of 2 samples" in said
    # a list of (input, target) samples is a dataset, as torch reads it
    samples = [(X[i], int(Y[i])) for i in range(32)]
    pipeline.require_datasets(_Linear, (samples, (X[32:], Y[32:]), None), PLAN)


class _Samples(torch.utils.data.Dataset):
    def __init__(self, make):
        self.make = make

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return self.make(i)


def test_a_dataset_of_dict_samples_says_what_hpocs_steps_take(tmp_path):
    """A HuggingFace-style dataset (`{"pixel_values": ..., "label": ...}`) failed every
    trial, and its retry, with `KeyError: 0` on a line of hpoc's own."""
    dicts = _Samples(lambda i: {"pixel_values": torch.tensor(X[i]), "label": int(Y[i])})
    with pytest.raises(TrainerError, match=r"^the batches are dicts \(keys pixel_values, label\), and hpoc's "
                                           r"train_step takes a batch as \(inputs, targets\)"):
        _Linear().run_local(CONFIG, (dicts, dicts), directory=tmp_path / "a")

    class ReadsDicts(_Linear):  # steps of its own read the dict
        def train_step(self, batch):
            return self.loss(self.model(batch["pixel_values"]), batch["label"])

        def validation_step(self, batch):
            out = self.model(batch["pixel_values"])
            return self.loss(out, batch["label"]), out

    last = ReadsDicts().run_local(CONFIG, (dicts, dicts), directory=tmp_path / "b")[-1]
    assert last["val_loss"] > 0 and 0 <= last["val_accuracy"] <= 1  # scored with the `label` key


def test_a_dataset_of_pil_images_fails_its_trial_once_naming_the_transform(tmp_path):
    """torchvision's datasets without a transform give PIL images: every trial failed in
    `default_collate`, and was retried, without a word of the fix."""
    image = pytest.importorskip("PIL.Image")
    pictures = _Samples(lambda i: (image.fromarray((X[i].reshape(2, 2) * 50).astype(np.uint8)), int(Y[i])))
    with pytest.raises(TrainerError, match=r"its samples hold PIL images \(a torchvision dataset without a "
                                           r"transform\).*transforms.PILToTensor\(\)") as info:
        _Linear().run_local(CONFIG, (pictures, pictures), directory=tmp_path)
    assert "default_collate" in str(info.value.__cause__)


def test_missing_values_in_the_data_are_said_as_it_loads_not_as_a_diverged_training():
    """A CSV with empty cells, read by pandas: NaN inputs made every trial's loss NaN, and
    the study ended with "no trial reported a finite objective (training diverged?)"."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=list("abcd"))
    df.loc[[5, 9], "c"] = np.nan
    said = _split_refused((df[:32], Y[:32]), (X[32:], Y[32:]))
    assert "returned a train split hpoc's train_step cannot use: its inputs hold NaN or inf in 2 " \
           "row(s) (the first: row 5)" in said and "`df.dropna()`" in said
    y = Y.astype(np.float32)
    y[35] = np.inf
    assert "validation split hpoc's validation_step cannot use: its targets hold NaN or inf in 1 " \
           "row(s) (the first: row 3)" in _split_refused((X[:32], Y[:32]), (X[32:], y[32:]))

    class Masks(_Linear):  # a step of its own may mask them
        def train_step(self, batch):
            return super().train_step((torch.nan_to_num(batch[0]), batch[1]))

    pipeline.require_datasets(Masks, ((df[:32], Y[:32]), (X[32:], Y[32:]), None), PLAN)


@pytest.mark.parametrize("raises", [
    # torchvision's: the URLError's text in a RuntimeError of its own
    "RuntimeError('Error downloading train-images-idx3-ubyte.gz:\\nTried http://x/, got:\\n"
    "<urlopen error [Errno -2] Name or service not known>\\n')",
    "urllib.error.URLError(socket.gaierror(-3, 'Temporary failure in name resolution'))",
    "ConnectionError(\"Couldn't reach 'mnist' on the Hub (ConnectionError)\")",
])
def test_a_getter_that_downloads_without_internet_is_told_where_to_download(tmp_path, raises):
    """A getter with `download=True` on a compute node: the error named the URL and the
    failed name lookup, not that these nodes have no internet nor what to do instead."""
    (tmp_path / "net.py").write_text(
        "import socket, urllib.error\n\nclass Getter:\n    def execute(self):\n"
        f"        raise {raises}\n\nclass Broken:\n    def execute(self):\n"
        "        raise ValueError('bad header')\n")
    plan = {"source": {"workdir": str(tmp_path)}, "pipeline": {"getter": {"target": "net:Getter"}}}
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    assert "help: it tried to download, and compute nodes usually have no internet: download the data " \
           "once on a login node" in str(info.value)
    # the error's own newlines (torchvision's) left the step's location on a line of its own
    assert "net.py:5)" in str(info.value).splitlines()[0], str(info.value)
    plan["pipeline"]["getter"]["target"] = "net:Broken"
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    assert "internet" not in str(info.value)


def test_a_getter_that_downloads_behind_a_firewall_that_drops_packets_fails_fast(tmp_path, monkeypatch):
    """`download=True` on a compute node whose firewall drops packets: torchvision's urlopen has
    no timeout, so the getter waited on the kernel's connect retries (minutes per mirror and
    file) before the message saying to download on a login node."""
    import socket
    import threading
    import time

    from torchvision.datasets import FashionMNIST

    dropping = socket.socket()  # a full accept queue: the kernel drops further SYNs, as a firewall
    dropping.bind(("127.0.0.1", 0))
    dropping.listen(0)
    port = dropping.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    monkeypatch.setattr(pipeline, "NETWORK_TIMEOUT_S", 1.0)
    (tmp_path / "net.py").write_text(
        "from torchvision.datasets import FashionMNIST\n\nclass Getter:\n    def execute(self):\n"
        "        return FashionMNIST('fmnist', download=True)\n")
    plan = {"source": {"workdir": str(tmp_path)}, "pipeline": {"getter": {"target": "net:Getter"}}}
    raised: list[BaseException] = []

    def load() -> None:
        try:
            pipeline.load_data(plan)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            raised.append(exc)

    loading = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    loading.start()
    try:
        loading.join(10)
        took = time.monotonic() - started
    finally:  # the connect hanging without the fix gets a reset, and the thread ends
        for s in (dropping, *fillers):
            s.close()
    assert not loading.is_alive() and took < 10, f"still waiting on the network after {took:.0f} s"
    assert isinstance(raised[0], pipeline.PipelineError), raised
    assert "timed out" in str(raised[0]) and "help: it tried to download, and compute nodes usually " \
        "have no internet" in str(raised[0]), str(raised[0])
    assert socket.getdefaulttimeout() is None  # the process's default is put back


def test_a_long_error_of_many_lines_from_a_getter_says_where_on_its_first_line(tmp_path):
    (tmp_path / "table.py").write_text(
        "class Getter:\n    def execute(self):\n"
        "        raise ValueError('columns differ:\\n' + '\\n'.join(['col' * 30] * 4))\n")
    plan = {"source": {"workdir": str(tmp_path)}, "pipeline": {"getter": {"target": "table:Getter"}}}
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("getter `table:Getter` failed: ValueError: columns differ: (") and \
        lines[0].endswith("table.py:3)") and lines[1:] == ["    " + "col" * 30] * 4, lines


def test_a_validation_split_that_holds_training_samples_is_warned_of():
    """A splitter that returned its training data twice, or slices that overlap, ran: the
    trials validated on what they trained on, and the study ranked memorisation best."""
    plan = {"pipeline": {"getter": {"target": "data:Getter"}, "splitter": {"target": "data:Split"}}}
    x, y = torch.randn(40, 3), torch.arange(40) % 3

    def said(train, val):
        return pipeline.shared_validation(plan, (train, val, None))

    assert said((x, y), (x, y)) == said((x, y), (x, y))  # the same tensors, in two tuples
    assert said((x, y), (x, y)).startswith("splitter `data:Split`: the validation split's inputs overlap "
                                           "the train split's in memory")
    pair = (x, y)
    assert "the validation split is the train split (the same object): val_loss and val_accuracy " \
           "measure data the model trains on" in said(pair, pair)
    assert said((x[:30], y[:30]), (x[25:], y[25:])) is not None  # off by five
    assert said((x[:30], y[:30]), (x[30:], y[30:])) is None  # adjacent slices: no common row
    assert said((x[:30], y[:30]), (x[30:].clone(), y[30:])) is None
    numpy_x = x.double().numpy()  # NumPy's float64: batched as float32 copies, which share nothing
    assert said((numpy_x[:30], y[:30]), (numpy_x[20:], y[20:])) is not None
    assert said((numpy_x[:30], y[:30]), (numpy_x[30:], y[30:])) is None
    whole = torch.utils.data.TensorDataset(x, y)
    train, val = torch.utils.data.Subset(whole, range(0, 30)), torch.utils.data.Subset(whole, range(25, 40))
    assert said(train, val).startswith("splitter `data:Split`: 5 of the validation split's 15 samples are "
                                       "in the train split")
    assert said(*torch.utils.data.random_split(whole, [30, 10])) is None
    # a sample drawn twice is one shared sample; far-apart indices (a sparse sample) still meet
    repeated = torch.utils.data.Subset(whole, [3, 3, 10**9, 7])
    assert "2 of the validation split's 3 samples" in said(repeated, torch.utils.data.Subset(whole, [3, 10**9, 8]))


@pytest.mark.parametrize("layout, channels, said", [
    ((40, 8, 8, 3), 3, r"images shaped \(8, 8, 8, 3\), channels last \(N, H, W, C\).*`x.transpose\(0, 3, 1, 2\)`"),
    ((40, 8, 8), 1, r"images shaped \(8, 8, 8\), without a channel dimension.*`x\[:, None\]`"),
])
def test_images_laid_out_otherwise_than_the_model_takes_them_say_how(tmp_path, layout, channels, said):
    """uint8 images as NumPy and PIL keep them, (N, H, W, C), or (N, H, W) without a channel:
    torch's "expected input[8, 8, 8, 3] to have 3 channels, but got 8 channels instead",
    retried as if it might pass, said nothing of the data."""
    images = np.random.default_rng(0).integers(0, 255, layout, dtype=np.uint8)

    class Conv(hpoc.Trainer):
        def create_model(self, config):
            return nn.Sequential(nn.Conv2d(channels, 4, 3), nn.Flatten(), nn.LazyLinear(3))

    with pytest.raises(TrainerError, match="^the input batches are " + said):
        Conv().run_local(CONFIG, ((images[:32], Y[:32]), (images[32:], Y[32:])), directory=tmp_path)
    # laid out as the model takes them, they train
    fixed = images.transpose(0, 3, 1, 2) if len(layout) == 4 else images[:, None]
    assert Conv().run_local(CONFIG, ((fixed[:32], Y[:32]), (fixed[32:], Y[32:])),
                            directory=tmp_path / "fixed")[-1]["val_loss"] > 0


def test_no_validation_split_under_a_validation_objective_is_said_as_the_data_loads():
    """HuggingFace's `train_test_split` gives `{"train", "test"}`: hpoc read no validation
    split, and every trial failed after training an epoch with "reported `train_loss` but
    not `val_accuracy`"."""
    plan = dict(PLAN, objective={"metrics": [{"name": "val_accuracy", "mode": "max"}]})
    splits = pipeline.as_splits({"train": (X[:32], Y[:32]), "test": (X[32:], Y[32:])})
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.require_datasets(_Linear, splits, plan)
    assert str(info.value).startswith(
        "getter `data:Getter` returned train and test splits but no validation split, and hpoc's loop "
        "computes the objective `val_accuracy` on the validation split (never on `test`)\n  help: return "
        "(train, validation[, test])")
    # an objective of the trainer's own making, or a loop that reports it itself
    pipeline.require_datasets(_Linear, splits, dict(PLAN, objective={"metrics": [{"name": "train_loss",
                                                                                   "mode": "min"}]}))
    own = type("Own", (_Linear,), {"validation_epoch": lambda self, epoch: {"val_accuracy": 1.0}})
    pipeline.require_datasets(own, splits, plan)


DICT_SAMPLES = """
from toy import ToySplitter


class Rows:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "label": self.y[i]}


class Split(ToySplitter):
    def execute(self, data):
        return tuple(Rows(*part) for part in super().execute(data))
"""


@pytest.mark.ray
def test_a_study_of_dict_samples_fails_each_trial_once_saying_what_the_steps_take(tmp_path, monkeypatch):
    """Through Ray: the trial's error is hpoc's (not retried), not a `KeyError: 0` on a line
    of hpoc's, retried as if it might pass."""
    import io

    from hpoc.runtime.study import EXIT_FAILED, RunOptions, run_study
    from runtime_plans import make_plan, write_toy

    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workdir = write_toy(tmp_path / "study")
    (workdir / "split.py").write_text(DICT_SAMPLES)
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2, "max_concurrent": 2},
                     space={"constants": {"epochs": 1, "batch_size": 32}},
                     pipeline={"splitter": {"target": "split:Split", "args": {}}},
                     failure={"max_retries": 2, "fail_fast": 3})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    said = progress.getvalue()
    assert code == EXIT_FAILED, said
    errored = "errored: the batches are dicts (keys pixel_values, label), and hpoc's train_step takes a " \
              "batch as (inputs, targets)"
    assert said.count(errored) == 2, said  # each trial once: a retry would fail the same way
    assert "retry" not in said.lower(), said


FLOAT64 = """
import json, os
import numpy as np
from toy import ToyTrainer
from hpoc.runtime.batches import as_tensors


class Split:
    def execute(self):
        x = np.random.default_rng(0).normal(size=(64, 8))  # np.loadtxt's float64
        y = (x[:, 0] > 0).astype(np.int64)
        return (x[:48], y[:48]), (x[48:], y[48:])


class Seeing(ToyTrainer):
    def create_model(self, config):
        x = self.train_data[0]
        tx = as_tensors(self.train_data)[0]
        with open(os.environ["SEEN"], "a") as fh:
            fh.write(json.dumps([str(x.dtype), x.flags.writeable, str(tx.dtype),
                                 bool(np.shares_memory(tx.numpy(), x))]) + "\\n")
        return super().create_model(config)
"""


@pytest.mark.ray
def test_a_trials_float64_data_is_the_shared_float32_array_not_its_own_copy(tmp_path, monkeypatch):
    import io
    import json

    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study
    from runtime_plans import make_plan, write_toy

    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.jsonl"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workdir = write_toy(tmp_path / "study")
    (workdir / "own.py").write_text(FLOAT64)
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     space={"constants": {"epochs": 1, "batch_size": 16}},
                     pipeline={"getter": {"target": "own:Split", "args": {}}, "splitter": None,
                               "trainer": {"target": "own:Seeing", "args": {}}})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    (seen,) = [json.loads(ln) for ln in (tmp_path / "seen.jsonl").read_text().splitlines()]
    # float32 as it arrives, read-only from Ray's object store, and batched in place
    assert seen == ["float32", False, "torch.float32", True]


def test_a_gpu_loops_loader_settings_run_on_a_cpu_trial():
    """`persistent_workers=True` (or `prefetch_factor`) from a GPU training script failed
    every CPU trial, which gets no loader workers: "persistent_workers option needs
    num_workers > 0"; `pin_memory=True` warned in every trial's stderr."""
    import warnings

    from hpoc.runtime.strategy import Strategy

    samples = [(torch.tensor([float(i)]), i % 2) for i in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "pin_memory ... no accelerator is found"
        loader = Strategy(device="cpu").dataloader(samples, 4, persistent_workers=True, prefetch_factor=4,
                                                   pin_memory=True)
        assert sum(len(batch[1]) for batch in loader) == 10
    assert not loader.loader.pin_memory and not loader.loader.persistent_workers
    # with workers, they are the loop's own settings
    loader = Strategy(device="cpu").dataloader(samples, 4, num_workers=1, persistent_workers=True)
    assert loader.loader.persistent_workers and loader.loader.num_workers == 1


def test_one_hot_targets_are_scored_and_half_precision_inputs_train(tmp_path):
    """Keras-style one-hot targets trained (CrossEntropyLoss takes class probabilities) but
    left `val_accuracy` out, so a study maximising it failed every trial; inputs stored in
    float16 (half the memory of a large dataset) failed every trial with "mat1 and mat2
    must have the same dtype"."""
    onehot = np.eye(3, dtype=np.float32)[Y]
    last = _Linear().run_local(CONFIG, ((X[:32], onehot[:32]), (X[32:], onehot[32:])), directory=tmp_path / "a")[-1]
    labels = _Linear().run_local(CONFIG, ((X[:32], Y[:32]), (X[32:], Y[32:])), directory=tmp_path / "b")[-1]
    assert last["val_accuracy"] == labels["val_accuracy"]  # the same model, scored by the same classes
    half = X.astype(np.float16)
    last = _Linear().run_local(CONFIG, ((half[:32], Y[:32]), (half[32:], Y[32:])), directory=tmp_path / "c")[-1]
    assert last["val_loss"] == pytest.approx(labels["val_loss"], rel=1e-2)


def test_inputs_without_targets_are_refused_not_trained_one_sample_against_the_next(tmp_path):
    """A dataset of inputs only (an autoencoder's) trained: hpoc's steps took the batch's
    first sample as the inputs and its second as their targets, and reported a loss."""
    class AutoEncoder(hpoc.Trainer):
        task = "regression"

        def create_model(self, config):
            return nn.Linear(4, 4)

    x = torch.tensor(X)
    for splits in ((x[:32], x[32:]), ((x[:32],), (x[32:],))):
        with pytest.raises(TrainerError, match=r"^the batches hold inputs only \(.*\), and hpoc's train_step "
                                               r"takes a batch as \(inputs, targets\).*`\(x, x\)`"):
            AutoEncoder().run_local(CONFIG, splits, directory=tmp_path / "a")
    pair = (torch.tensor(X), torch.tensor(X))
    assert AutoEncoder().run_local(CONFIG, (pair, pair), directory=tmp_path / "b")[-1]["val_loss"] > 0


def test_a_stream_as_a_split_is_refused_as_the_data_loads():
    """An IterableDataset (WebDataset, a streamed HuggingFace dataset) failed every trial
    with "DataLoader with IterableDataset: expected unspecified shuffle option"."""
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(torch.tensor(X), torch.tensor(Y)))

    said = _split_refused(Stream(), (X[32:], Y[32:]))
    assert "returned a train split hpoc cannot batch: it is an IterableDataset (a stream, Stream): " in said
    assert "write a `train()` of your own that iterates the stream" in said


def test_a_dataset_without_len_is_refused_as_the_data_loads():
    """A map-style Dataset with `__getitem__` alone passed as the data loaded, and every trial
    failed in torch's sampler: "object of type 'Rows' has no len()"."""
    class Rows(torch.utils.data.Dataset):
        def __getitem__(self, i):
            return torch.tensor(X[i]), int(Y[i])

    said = _split_refused((X[:32], Y[:32]), Rows())
    assert "returned a validation split hpoc cannot batch: it is a Dataset without `__len__` (Rows)" in said
    assert "give `Rows` a `__len__`" in said


def test_a_generator_as_a_split_is_refused_before_ray_starts():
    """A generator of (input, target) samples passed as the data loaded, and was refused only
    after Ray had started, as Ray could not pickle it."""
    said = _split_refused(((x, y) for x, y in zip(X, Y)), (X[32:], Y[32:]))
    assert "returned a train split hpoc cannot batch: it is a generator (a one-pass stream)" in said
    assert "`list(...)`" in said or "arrays" in said


def test_train_test_splits_four_arrays_are_told_apart_from_splits():
    """A splitter returning `train_test_split(x, y)` as it comes was told only that it must
    return (train, validation): "got tuple of length 4"."""
    from sklearn.model_selection import train_test_split

    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.as_splits(tuple(train_test_split(X, Y, test_size=0.2, random_state=0)), "splitter `data:S`")
    assert str(info.value) == (
        "splitter `data:S` returned four arrays, as scikit-learn's `train_test_split(x, y)` gives them: "
        "(x_train, x_val, y_train, y_val), not (train, validation) splits\n"
        "  help: return `(x_train, y_train), (x_val, y_val)`")


def test_class_names_as_a_datasets_targets_are_said_in_the_datas_terms(tmp_path):
    """A Dataset returning `(x, "cat")`: every trial failed in torch with "argument
    'target' must be Tensor, not tuple", naming no line of the study's."""
    names = ["cat", "dog", "owl"]
    named = _Samples(lambda i: (torch.tensor(X[i]), names[int(Y[i])]))
    with pytest.raises(TrainerError, match=r"^the targets are strings \('\w+', '\w+', '\w+', \.\.\.\): the loss "
                                           r"takes numbers"):
        _Linear().run_local(dict(CONFIG, batch_size=16), (named, named), directory=tmp_path)


def test_checking_a_float64_split_as_it_loads_copies_none_of_it():
    """NumPy's default float64 was cast whole to float32 by each check of the data in the
    driver (its type, its size, its NaN): a copy half the data's size, on the login node,
    before Ray had it. One 1e39 (finite in float64, inf in float32) is still found."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource
        import numpy as np
        from hpoc.runtime import pipeline
        from hpoc.runtime.trainer import Trainer

        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MiB

        x, y = np.random.default_rng(0).random((4_000_000, 4)), np.zeros(4_000_000, np.int64)
        plan = {"pipeline": {"getter": {"target": "data:Getter"}}, "training": {}}
        pipeline.require_datasets(Trainer, ((x[:64], y[:64]), (x[:8], y[:8]), None), plan)  # its imports
        before = peak()
        pipeline.require_datasets(Trainer, ((x, y), (x[:8], y[:8]), None), plan)
        print(peak() - before)
        x[123_456, 2] = 1e39
        try:
            pipeline.require_datasets(Trainer, ((x, y), (x[:8], y[:8]), None), plan)
        except pipeline.PipelineError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    grown, said = out.split("\n", 1)
    assert int(grown) < 32, f"the check grew the driver by {grown} MiB for 128 MiB of float64 data"
    assert "its inputs hold NaN or inf in 1 row(s) (the first: row 123456)" in said


def test_the_checks_as_the_data_loads_read_no_sample_of_a_lazy_dataset():
    """A dataset that reads its samples from files (images, HDF5) on `__getitem__`: a check
    that looked at its samples in the driver would read the data set from disk, or open a
    file there that cannot be sent to the trials."""
    read = []

    class Lazy(torch.utils.data.Dataset):
        def __len__(self):
            return 1_000_000

        def __getitem__(self, i):
            read.append(i)
            return torch.zeros(4), 0

    whole = Lazy()
    for data in ((whole, Lazy(), None),
                 tuple(torch.utils.data.Subset(whole, ix) for ix in (range(0, 900_000), range(900_000, 10**6)))
                 + (None,)):
        splits = pipeline.as_splits(data[:2])
        pipeline.require_datasets(_Linear, splits, PLAN)
        assert pipeline.shared_validation(PLAN, splits) is None
    assert read == []


def test_batches_that_are_mappings_but_not_dicts_are_scored_too(tmp_path):
    """HuggingFace's collators give a `BatchEncoding`, a mapping that is no dict: a trainer
    whose own steps read it failed every trial as hpoc counted and scored its batches."""
    from collections import UserDict
    from torch.utils.data import default_collate

    dicts = _Samples(lambda i: {"pixel_values": torch.tensor(X[i]), "label": int(Y[i])})

    class ReadsEncodings(_Linear):
        def create_dataloaders(self, train, validation=None, test=None, **kwargs):
            super().create_dataloaders(train, validation, test,
                                       collate_fn=lambda samples: UserDict(default_collate(samples)))

        def train_step(self, batch):
            return self.loss(self.model(batch["pixel_values"]), batch["label"])

        def validation_step(self, batch):
            out = self.model(batch["pixel_values"])
            return self.loss(out, batch["label"]), out

    last = ReadsEncodings().run_local(CONFIG, (dicts, dicts), directory=tmp_path)[-1]
    assert last["val_loss"] > 0 and 0 <= last["val_accuracy"] <= 1

    class StepsOfHpoc(ReadsEncodings):
        train_step, validation_step = _Linear.train_step, _Linear.validation_step

    with pytest.raises(TrainerError, match=r"^the batches are dicts \(keys pixel_values, label\)"):
        StepsOfHpoc().run_local(CONFIG, (dicts, dicts), directory=tmp_path / "hpocs")


def test_row_slices_that_share_no_row_are_not_warned_of_whatever_the_memory_layout():
    """The warning compared the memory ranges the slices span: rows of a column-major array
    (`df.to_numpy()` of a float DataFrame) or every other row interleave there without a
    common row, and a sound split was said to validate on training samples."""
    plan = {"pipeline": {"getter": {"target": "data:Getter"}}}
    y = np.arange(40) % 3
    for x in (np.asfortranarray(np.random.rand(40, 3)), torch.randn(40, 3).t().contiguous().t()):
        assert pipeline.shared_validation(plan, ((x[:30], y[:30]), (x[30:], y[30:]), None)) is None
        assert pipeline.shared_validation(plan, ((x[:30], y[:30]), (x[25:], y[25:]), None)) is not None
    x = np.random.rand(40, 3)
    assert pipeline.shared_validation(plan, ((x[::2], y[::2]), (x[1::2], y[1::2]), None)) is None


def test_float64_arrays_become_float32_once_in_the_driver_and_trials_share_them():
    """A CSV read with np.loadtxt is float64: each trial process made its own float32 copy,
    so N concurrent trials held N copies beside the one in Ray's object store."""
    x, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)  # float64, int64
    train, val, test = pipeline.in_model_dtype(_Linear, ((x[:32], y[:32]), [x[32:], y[32:]], None))
    assert train[0].dtype == np.float32 and val[0].dtype == np.float32 and isinstance(val, list)
    assert train[1] is not None and train[1].dtype == np.int64 and test is None
    for a in (*train, *val):
        a.flags.writeable = False  # as Ray's object store hands them to a trial
    tx, _ = as_tensors(train)
    assert tx.dtype == torch.float32 and np.shares_memory(tx.numpy(), train[0])


def test_float64_tensor_inputs_become_float32_once_in_the_driver_and_train_alike(tmp_path):
    """A float64 tensor (`torch.from_numpy` of np.loadtxt's), or a TensorDataset of them,
    reached every trial as float64, each trial holding its own float64 copy, and was cast
    per batch. The inputs are cast once in the driver, as the batches cast them (targets
    stay: the loss was and is computed with them as given); the numbers are the same."""
    class Regression(_Linear):
        task = "regression"
        normalize = (0.5, 2.0)

    x, y = torch.tensor(rng.normal(size=(40, 4))), torch.tensor(rng.normal(size=(40, 3)))
    data = ((x[:32], y[:32]), torch.utils.data.TensorDataset(x[32:], y[32:]), None)
    train, val, test = pipeline.in_model_dtype(Regression, data)
    assert train[0].dtype == torch.float32 and train[1] is data[0][1] and test is None
    assert type(val) is torch.utils.data.TensorDataset and val.tensors[0].dtype == torch.float32
    assert val.tensors[1] is data[1].tensors[1]
    given = Regression().run_local(CONFIG, data[:2], directory=tmp_path / "a")
    cast = Regression().run_local(CONFIG, (train, val), directory=tmp_path / "b")
    assert [(h["train_loss"], h["val_loss"]) for h in cast] == [(h["train_loss"], h["val_loss"]) for h in given]

    class OwnInputs(Regression):  # a prepare_inputs of its own gets the inputs as given
        def prepare_inputs(self, x):
            return x.float()

    assert pipeline.in_model_dtype(OwnInputs, data) is data


def test_float64_dataframes_become_float32_once_in_the_driver_too():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=list("abc")).assign(n=np.arange(40))
    labels = pd.Series(rng.integers(0, 3, 40))
    (train, *_) = pipeline.in_model_dtype(_Linear, ((frame, labels), None, None))
    assert isinstance(train[0], pd.DataFrame) and train[0].to_numpy().dtype == np.float32
    assert train[1] is labels  # int64 class labels stay as they are


def test_float64_arrays_stay_as_given_to_a_trainer_that_batches_them_itself():
    """A trainer of its own `create_dataloaders` reads the splits as the getter made them."""
    class OwnLoaders(_Linear):
        def create_dataloaders(self, *args, **kwargs):
            super().create_dataloaders(*args, **kwargs)

    x = rng.normal(size=(8, 4))
    data = ((x, Y[:8]), None, None)
    assert pipeline.in_model_dtype(OwnLoaders, data) is data


class _Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.full((4,), float(i)), i % 3


@pytest.mark.parametrize("own", [False, True])
def test_loader_workers_beyond_the_trials_cpus_are_said_once_in_its_log(tmp_path, capfd, own):
    """`create_dataloaders(num_workers_dataloader=8)` (itwinai's) or a DataLoader of one's own
    in a trial of 2 CPUs: 9 processes on 2 cores, and torch's own warning counts the node's."""
    class Workers(_Linear):
        def create_dataloaders(self, train, validation=None, test=None, **settings):
            if own:
                super().create_dataloaders(train, validation)
                self.train_dataloader = torch.utils.data.DataLoader(train, batch_size=8, num_workers=8)
            else:
                super().create_dataloaders(train, validation, num_workers_dataloader=8)

    plan = {"resources": {"cpus_per_worker": 2, "workers": 1}, "training": {}}
    Workers().run_local(CONFIG, (_Rows(), _Rows()), directory=tmp_path, plan=plan)
    said = [ln for ln in capfd.readouterr().err.splitlines() if "num_workers" in ln and "[hpoc]" in ln]
    assert len(said) == 1, said
    assert said[0].startswith("[hpoc] warning: the train DataLoader has num_workers=8, and the trial "
                              "has cpus_per_worker = 2"), said
    capfd.readouterr()
    plan["resources"]["cpus_per_worker"] = 9
    Workers().run_local(CONFIG, (_Rows(), _Rows()), directory=tmp_path / "b", plan=plan)
    assert "num_workers" not in capfd.readouterr().err


@pytest.mark.parametrize("where", ["setup", "train"])
def test_loader_workers_a_trainer_builds_itself_beyond_the_trials_cpus_are_said_as_it_runs(tmp_path, capfd, where):
    """A DataLoader made in the trainer's own `setup()` or `train()` (not hpoc's
    `create_dataloaders`): `hpoc check` sees only literal counts, and the trial ran 3
    processes on its 1 core in silence. Said once, when the trial first iterates it."""
    class OwnLoop(_Linear):
        def setup(self):
            super().setup()
            if where == "setup":
                self.loader = torch.utils.data.DataLoader(_Rows(), batch_size=8, num_workers=2)

        def train(self):
            self.setup()
            loader = self.loader if where == "setup" else torch.utils.data.DataLoader(
                _Rows(), batch_size=8, num_workers=2)
            for epoch in range(2):
                for x, y in loader:
                    loss = self.train_step((x, y))
                    self.strategy.backward(loss)
                    self.strategy.step()
                self.report({"train_loss": float(loss.detach())}, epoch=epoch)

    plan = {"resources": {"cpus_per_worker": 1, "workers": 1}, "training": {}}
    OwnLoop().run_local(CONFIG, (_Rows(), _Rows()), directory=tmp_path, plan=plan)
    said = [ln for ln in capfd.readouterr().err.splitlines() if "num_workers" in ln and "[hpoc]" in ln]
    assert len(said) == 1, said
    assert said[0].startswith(f"[hpoc] warning: the DataLoader iterated at {__file__}:"), said
    assert "has num_workers=2, and the trial has cpus_per_worker = 1: 3 processes share its 1 core(s)" in said[0]
    plan["resources"]["cpus_per_worker"] = 3
    OwnLoop().run_local(CONFIG, (_Rows(), _Rows()), directory=tmp_path / "b", plan=plan)
    assert "num_workers" not in capfd.readouterr().err


def test_loader_workers_are_said_from_as_many_as_the_trials_cpus_as_the_hint_counts():
    """N workers and the trial's own process are N + 1 processes: the warning started above
    N = cpus_per_worker, while its hint asked for at most cpus_per_worker - 1."""
    from hpoc.runtime.loaders import watched

    said: list[str] = []
    loader = torch.utils.data.DataLoader(_Rows(), batch_size=8, num_workers=2)
    for cpus, times in ((3, 0), (2, 1)):
        with watched(cpus, lambda _: "the train DataLoader", said.append):
            next(iter(loader))
        assert len(said) == times, said
    assert said[0].endswith("set `cpus_per_worker = 3` in `resources`, or `num_workers` to at most 1"), said


def test_overlapping_loader_watches_leave_dataloader_as_it_was_and_each_still_says():
    """Two trials' watches in one process that end out of order (the first to start ends
    first): each put back the __iter__ it found, so the later one's patch stayed on
    DataLoader for good (a finished trial's callback on every later loader), and the later
    trial, still training, was no longer watched."""
    from hpoc.runtime.loaders import watched

    original = torch.utils.data.DataLoader.__iter__
    said_a: list[str] = []
    said_b: list[str] = []
    loader = torch.utils.data.DataLoader(_Rows(), batch_size=8, num_workers=2)
    a = watched(1, lambda _: "a's loader", said_a.append)
    b = watched(1, lambda _: "b's loader", said_b.append)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    next(iter(loader))  # b's trial still trains
    b.__exit__(None, None, None)
    assert torch.utils.data.DataLoader.__iter__ is original
    assert said_a == [] and len(said_b) == 1 and said_b[0].startswith("b's loader has num_workers=2"), (said_a, said_b)
    next(iter(loader))
    assert len(said_b) == 1


def test_data_too_big_for_one_trial_on_this_machine_is_said_before_ray(monkeypatch):
    """The splits went into Ray's object store, and torch tensors into each of a trial's
    worker processes, whatever memory the machine had: the trials died of the OOM killer
    (or Ray's object store spilled) mid-study. Said as the data loads, against the memory
    available (faked here)."""
    from hpoc.runtime import datamem
    from hpoc.runtime.memlimit import Room

    x, y = torch.zeros(1000, 250), torch.zeros(1000, dtype=torch.int64)  # 1,000,000 + 8,000 bytes
    data = ((x[:800], y[:800]), (x[800:], y[800:]), None)
    plan = {**PLAN, "resources": {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0}}
    said = datamem.too_big(plan, datamem.sizes(data), Room(1_500_000))
    assert said is not None and said.startswith(
        "getter `data:Getter` returned splits of 984.4 KiB, of which 984.4 KiB torch tensors that each of "
        "a trial's 2 worker processes copies: 1.9 MiB for one trial, more than the 1.4 MiB this "
        "machine has available"), said
    assert "help: " in said and "NumPy arrays" in said and said.endswith("run where there is more memory")
    assert datamem.too_big(plan, datamem.sizes(data), Room(3_000_000)) is None
    # NumPy arrays are shared with the trials through the object store: one copy
    arrays = ((x.numpy(), y.numpy()), None, None)
    assert datamem.too_big(plan, datamem.sizes(arrays), Room(900_000)) is None


def test_views_of_one_storage_count_it_once_against_memory():
    """A trial's workers unpickle a storage once however many views of it the splits hold
    (torch pickles each storage once; compact.py keeps a view of nearly all of its storage):
    train `x[:960]` and validation `x[40:]` counted as two copies refused data that fits."""
    from hpoc.runtime import datamem
    from hpoc.runtime.memlimit import Room

    x = torch.zeros(1000, 250)  # 1,000,000 bytes
    data = ((x[:960],), (x[40:],), None)
    plan = {**PLAN, "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0}}
    assert datamem.sizes(data) == (1_000_000, 1_000_000)
    assert datamem.too_big(plan, datamem.sizes(data), Room(1_200_000)) is None
    # the same storage pickled twice (two splits given as their own tensors) still counts twice
    assert datamem.sizes(((x.clone(),), (x.clone(),), None))[1] == 2_000_000


@pytest.mark.parametrize("local", [True, False])
def test_a_local_run_whose_data_cannot_fit_one_trial_stops_before_ray(tmp_path, monkeypatch, capsys, local):
    """A one-node SLURM job runs its trials on the driver's node, in the job's memory: it
    is checked as a local run is (it was not, and its trials were OOM-killed)."""
    import io

    from hpoc.runtime import datamem, session
    from hpoc.runtime.memlimit import Room
    from hpoc.runtime.study import RunOptions, run_study
    from runtime_plans import make_plan, write_toy

    plan = make_plan(write_toy(tmp_path / "w"), tmp_path / "results")
    monkeypatch.setattr(datamem, "available_memory", lambda: Room(1000))  # fewer bytes than the toy's data
    monkeypatch.setattr(session, "start_local", lambda **k: pytest.fail("Ray started"))
    monkeypatch.setattr(session, "connect_cluster", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=local, num_cpus=1, progress=progress, out=io.StringIO()))
    said = capsys.readouterr().err
    assert code != 0 and "error: splitter `toy:ToySplitter` returned splits of " in said and "more than the 1000 bytes this machine has available" in said, said
    assert "Traceback" not in said
