"""The splits as the driver hands them to Ray (study._load_data): views of a larger tensor
were pickled with their whole storage, and NumPy views and memmaps went into every trial
as private copies. What Ray would pickle is measured here as it does it (cloudpickle,
protocol 5): bytes in band are copied into each trial, buffers out of band are shared."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import hpoc
from hpoc.runtime import study


class _Linear(hpoc.Trainer):
    def create_model(self, config):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(3))


class _OwnLoaders(_Linear):
    def create_dataloaders(self, *args, **kwargs):
        super().create_dataloaders(*args, **kwargs)


_NAMES = itertools.count()


def _loaded(tmp_path, body, trainer=_Linear):
    """What the driver shares with the trials, from a getter whose execute() is `body`
    (x: float32 rows x 8, y: int64 labels, both owning their storage; np is NumPy)."""
    module = f"views{next(_NAMES)}"  # a module loaded once is not read again
    (tmp_path / f"{module}.py").write_text(
        "import numpy as np, torch\n\nclass Getter:\n    def execute(self):\n"
        "        x = torch.rand(4000, 8)\n        y = torch.randint(0, 3, (4000,))\n"
        f"        {body}\n")
    plan = {"source": {"workdir": str(tmp_path)}, "pipeline": {"getter": {"target": f"{module}:Getter"}},
            "objective": {"metrics": [{"name": "val_loss", "mode": "min"}]}}
    return study._load_data(plan, trainer, io.StringIO())


def _pickled(obj):
    """(bytes in band, bytes out of band) as Ray pickles obj."""
    from ray import cloudpickle

    buffers, out = [], io.BytesIO()
    cloudpickle.CloudPickler(out, protocol=5, buffer_callback=buffers.append).dump(obj)
    return out.tell(), sum(memoryview(b).nbytes for b in buffers)


OWN = 4000 * 8 * 4 + 4000 * 8  # x and y's own bytes


@pytest.mark.parametrize("body", [
    "n = 3600; return (x[:n], y[:n]), (x[n:], y[n:])",
    "n = 3600; return (x.narrow(0, 0, n), y.narrow(0, 0, n)), (x.narrow(0, n, 400), y.narrow(0, n, 400))",
    "return tuple(zip(x.split([3600, 400]), y.split([3600, 400])))",
    "return tuple(zip(x.chunk(2), y.chunk(2)))",
    "n = 3600; D = torch.utils.data.TensorDataset; return D(x[:n], y[:n]), D(x[n:], y[n:])",
])
def test_views_of_one_tensor_reach_the_trials_as_their_own_rows_not_their_whole_storage(tmp_path, body):
    """A splitter's `(x[:n], y[:n]), (x[n:], y[n:])`: torch pickles each view with its
    base's whole storage, so Ray's object store and every trial held the data twice."""
    data = _loaded(tmp_path, body)
    inband, _ = _pickled(data)
    assert inband < OWN * 1.05, (inband, OWN)  # was 2 x OWN
    train, val, _ = data
    (tx, ty), (vx, vy) = (getattr(s, "tensors", s) for s in (train, val))
    assert tx.dtype == torch.float32 and ty.dtype == torch.int64 and tx.shape[1] == vx.shape[1] == 8
    assert len(tx) + len(vx) == len(ty) + len(vy) == 4000
    assert tx.untyped_storage().nbytes() == tx.nbytes  # a storage of its own: trains as before


def test_column_slices_and_strided_rows_are_compacted_with_their_values(tmp_path):
    data = _loaded(tmp_path, "z = x.clone(); return (x[:3000, :4], y[:3000]), (z[::4][:1000], y[::4])")
    (tx, ty), (vx, vy) = data[:2]
    assert _pickled(data)[0] < (3000 * 4 * 4 + 1000 * 8 * 4 + 4000 * 8) * 1.1  # was 4 x
    assert tx.shape == (3000, 4) and vx.shape == (1000, 8) and ty.shape == (3000,) and vy.shape == (1000,)
    assert tx.is_contiguous() and vx.is_contiguous()


def test_tensors_of_their_own_are_not_copied_and_one_given_twice_stays_one(tmp_path):
    """Train and validation as the same object (a smoke test's) pickled once; a split
    that owns its tensors is handed on as it is."""
    owned = _loaded(tmp_path, "return (x, y), (x, y)")
    assert owned[0][0] is owned[1][0] and owned[0][1] is owned[1][1]
    got = _loaded(tmp_path, "v = (x[1000:], y[1000:]); return v, v, (x[1000:], y[1000:])")
    train, val, test = got
    assert train is val and test[0] is train[0]  # the same view made twice: one copy
    assert train[0].untyped_storage().nbytes() == 3000 * 8 * 4
    assert _pickled(got)[0] < 3000 * 40 * 1.05  # pickled once
    # a view of nearly all of its storage is not worth a copy in the driver
    most = _loaded(tmp_path, "return (x[100:], y[100:]), (x[100:], y[100:])")
    assert most[0][0].untyped_storage().data_ptr() == most[1][0].untyped_storage().data_ptr()


def test_views_keep_their_values_and_train_alike(tmp_path):
    torch.manual_seed(0)
    x, y = torch.rand(64, 4), torch.randint(0, 3, (64,))
    from hpoc.runtime import compact

    given = ((x[:48], y[:48]), (x[48:], y[48:]), None)
    made = compact.for_ray(given, arrays=True)
    assert all(torch.equal(a, b) for s, t in zip(given[:2], made[:2]) for a, b in zip(s, t))
    config = {"lr": 0.01, "batch_size": 8, "epochs": 1}
    a = _Linear().run_local(config, given[:2], directory=tmp_path / "a")
    b = _Linear().run_local(config, made[:2], directory=tmp_path / "b")
    assert [h["val_loss"] for h in a] == [h["val_loss"] for h in b]


def test_expanded_and_autograd_tensors_are_left_to_pickle_as_they_are():
    from hpoc.runtime import compact

    row = torch.rand(1, 8).expand(100, 8)  # a storage smaller than the view
    leaf = torch.rand(100, 8, requires_grad=True)
    data = ((row, torch.zeros(100)), (leaf, torch.zeros(100)), None)
    assert compact.for_ray(data, arrays=True) is data


def test_a_compacted_tensor_dataset_keeps_what_the_study_set_on_it():
    """A TensorDataset of views is made again from its rows: what the study's code had set
    on it (`classes`, read by its trainer) was lost, an AttributeError in every trial."""
    from hpoc.runtime import compact

    x, y = torch.rand(100, 4), torch.zeros(100, dtype=torch.long)
    train = torch.utils.data.TensorDataset(x[:80], y[:80])
    train.classes = ["cat", "dog"]
    made = compact.for_ray((train, None, None), arrays=False)[0]
    assert made is not train and made.tensors[0].untyped_storage().nbytes() == 80 * 4 * 4
    assert made.classes == ["cat", "dog"]


def test_numpy_column_slices_and_memmaps_are_shared_with_the_trials_not_copied(tmp_path):
    """NumPy pickles a non-contiguous view (`x[:, :4]`, `x[::2]`) and a memmap (its whole
    file) in band: each trial unpickled its own copy, where a plain array is shared."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4000, 8), dtype=np.float32))
    body = ("a = np.load('x.npy', mmap_mode='r'); b = np.arange(4000); "
            "return (a[:3600], b[:3600]), (a[3600:, :4], b[3600:]), (a[::2], b[::2])")
    data = _loaded(tmp_path, body)
    inband, shared = _pickled(data)
    assert inband < 4096 and shared > 3600 * 8 * 4, (inband, shared)
    assert type(data[0][0]) is np.ndarray and data[1][0].shape == (400, 4)
    assert np.array_equal(data[2][0], np.load(tmp_path / "x.npy")[::2])
    assert data[0][1] is not None and data[0][1].dtype == np.int64
    # a trainer's own loaders get NumPy's as returned (a private copy is writable)
    own = _loaded(tmp_path, body, trainer=_OwnLoaders)
    assert type(own[0][0]) is np.memmap and _pickled(own)[0] > 3600 * 8 * 4


def test_a_list_of_samples_cut_from_one_tensor_is_sent_as_its_rows_not_a_storage_per_sample(tmp_path):
    """`[(x[i], y[i]) for i in ...]`: every sample pickled the whole of x and y, a split of
    n samples as n copies of the data (60,000 Fashion-MNIST rows: terabytes)."""
    data = _loaded(tmp_path, "return [(x[i], y[i]) for i in range(400)], [(x[i], y[i]) for i in range(400, 500)]")
    assert _pickled(data)[0] < 500 * (8 * 4 + 8) + 500 * 1000, _pickled(data)  # was 500 x OWN
    assert len(data[0]) == 400 and len(data[1]) == 100 and data[1][0][0].shape == (8,) and data[1][0][1].dim() == 0
    assert data[0][3][0].untyped_storage().nbytes() == 8 * 4


def test_the_driver_lets_go_of_the_splits_once_ray_holds_them(tmp_path, monkeypatch):
    """The driver kept the getter's data for the whole study, beside the object store's
    copy: a 20 GB dataset took 40 GB of the node its trials run on."""
    import gc
    import sys
    import weakref

    import ray

    from hpoc.runtime import session
    from hpoc.runtime.exits import StudyError
    from runtime_plans import make_plan, write_toy

    sys.path.insert(0, str(tmp_path / "study"))  # the toy trainer's module, as the driver imports it
    workdir = write_toy(tmp_path / "study")
    (workdir / "big.py").write_text("import torch\n\nclass Getter:\n    def execute(self):\n"
                                    "        return (torch.rand(64, 4), torch.randint(0, 2, (64,))), None\n")
    plan = make_plan(workdir, tmp_path / "results", objective={"metrics": [{"name": "train_loss", "mode": "min"}]},
                     pipeline={"getter": {"target": "big:Getter", "args": {}}, "splitter": None})

    class Up:
        local, neighbours, address = True, [], "local"

        def close(self):
            pass

    held, after = [], []

    def put(data):
        held.append(weakref.ref(data[0][0]))
        return "ref"

    def trainable(*_):  # made right after the put: where the driver is done with the data
        gc.collect()
        after.append(held[0]() is None)
        raise StudyError("stop here")

    monkeypatch.setattr(session, "start_local", lambda **_: Up())
    monkeypatch.setattr(ray, "nodes", lambda: [{"Resources": {"CPU": 64}}])
    monkeypatch.setattr(ray, "put", put)
    monkeypatch.setattr(study, "make_trainable", trainable)
    from hpoc.runtime.study import RunOptions, run_study

    assert run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO())) != 0
    assert after == [True]


def test_float64_views_are_cast_and_compacted_in_one_walk_and_keep_the_datasets_attributes(tmp_path):
    """The driver walked the splits twice (the float64 cast, then the compaction), and the
    cast made a TensorDataset again without what the study had set on it (`classes`, read
    by its trainer): an AttributeError in every trial."""
    data = _loaded(tmp_path, "D = torch.utils.data.TensorDataset; t = D(x[:3000].double(), y[:3000]); "
                             "t.classes = ['a', 'b', 'c']; v = D(x.double()[3000:], y[3000:]); return t, v")
    train, val, _ = data
    assert train.classes == ["a", "b", "c"]
    assert train.tensors[0].dtype == val.tensors[0].dtype == torch.float32  # inputs cast once, here
    assert val.tensors[0].untyped_storage().nbytes() == 1000 * 8 * 4  # cast: a storage of its own
    assert train.tensors[1].untyped_storage().nbytes() == 3000 * 8  # the labels' view compacted


def test_a_namedtuple_split_of_float64_arrays_loads(tmp_path):
    """The float64 cast made a split again as `type(split)(parts)`: a namedtuple's takes its
    fields one by one, and the driver stopped with a TypeError (XY.__new__() missing 'y')."""
    data = _loaded(tmp_path, "XY = __import__('collections').namedtuple('XY', 'x y'); a = x.double().numpy(); "
                             "return XY(a[:3000], y[:3000].numpy()), XY(a[3000:], y[3000:].numpy())")
    train, val, _ = data
    assert type(train).__name__ == "XY" and train.x.shape == (3000, 8) and val.y.shape == (1000,)
