"""Strategies: accumulation, precision, data sharding, DDP and DeepSpeed on CPU (Gloo)."""

from __future__ import annotations

import contextlib
import json
import logging
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from hpoc.runtime.batches import TensorBatches
from hpoc.runtime.report import free_port
from hpoc.runtime.strategy import DDPStrategy, DeepSpeedStrategy, Strategy, file_precision, resolve_precision

torch.set_num_threads(1)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def test_gradient_accumulation_equals_one_big_batch():
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    big, small = _model(), _model()
    s1 = Strategy(grad_accumulation_steps=1)
    m1, o1, _ = s1.distributed(big, torch.optim.SGD(big.parameters(), lr=0.1))
    with s1.micro_batch():
        s1.backward(nn.functional.mse_loss(m1(x), y))
    assert s1.step()

    s2 = Strategy(grad_accumulation_steps=2)
    m2, o2, _ = s2.distributed(small, torch.optim.SGD(small.parameters(), lr=0.1))
    stepped = []
    for part in (slice(0, 8), slice(8, 16)):
        with s2.micro_batch():
            s2.backward(nn.functional.mse_loss(m2(x[part]), y[part]))
        stepped.append(s2.step())
    assert stepped == [False, True]
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_short_last_window_still_steps():
    m = _model()
    s = Strategy(grad_accumulation_steps=4)
    m, o, _ = s.distributed(m, torch.optim.SGD(m.parameters(), lr=0.1))
    before = [p.clone() for p in m.parameters()]
    with s.micro_batch(last=True):
        s.backward(m(torch.randn(2, 4)).sum())
    assert s.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_precision_resolution(caplog):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with caplog.at_level(logging.WARNING, logger="hpoc.strategy"):
        assert resolve_precision("fp16", cpu) == "fp32"
    assert "fp16 needs a GPU" in caplog.text
    s = Strategy(precision="bf16")
    with s.autocast():
        out = nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", cpu)


class _FakeRanks(Strategy):
    def __init__(self, rank, world):
        super().__init__()
        self._r, self._w = rank, world

    @property
    def rank(self):
        return self._r

    @property
    def world_size(self):
        return self._w


def test_batches_split_data_across_ranks_like_a_distributed_sampler():
    x = torch.arange(10).float().unsqueeze(1)
    seen_val, seen_train = [], []
    for rank in range(3):
        s = _FakeRanks(rank, 3)
        val = TensorBatches([x], s, 2, shuffle=False, pad=False)
        seen_val += [int(v) for b in val for v in b[0].flatten()]
        train = TensorBatches([x], s, 2, shuffle=True, pad=True, seed=4)
        train.set_epoch(1)
        ranks_part = [int(v) for b in train for v in b[0].flatten()]
        assert len(ranks_part) == 4  # ceil(10 / 3): ranks step in lockstep
        seen_train += ranks_part
    assert sorted(seen_val) == list(range(10))          # validation: every sample once
    assert set(seen_train) == set(range(10)) and len(seen_train) == 12  # two wrapped around
    # Without padding every rank still makes as many batches as the others (forward passes
    # can be collective); a rank with nothing left joins with a stand-in that is not counted.
    for n, world, size in [(9, 2, 4), (1, 2, 4), (10, 3, 3)]:
        data = torch.arange(n).float().unsqueeze(1)
        counted, lengths = [], set()
        for rank in range(world):
            val = TensorBatches([data], _FakeRanks(rank, world), size, shuffle=False, pad=False)
            made = 0
            for (b,) in val:
                made += 1
                if not val.empty:
                    counted += [int(v) for v in b.flatten()]
            lengths.add((made, len(val)))
        assert len(lengths) == 1 and sorted(counted) == list(range(n)), (n, world, lengths)
    a = TensorBatches([x], _FakeRanks(0, 1), 10, shuffle=True, pad=True, seed=4)
    orders = []
    for epoch in (0, 1, 0):
        a.set_epoch(epoch)
        orders.append(a.indices().tolist())
    assert orders[0] == orders[2] != orders[1]          # a permutation per (seed, epoch)


class _Items(torch.utils.data.Dataset):
    """Not tensors: batched by a DataLoader with a DistributedSampler."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


def test_validation_dataloader_counts_every_sample_once_across_ranks():
    # DistributedSampler pads the ranks to equal length by repeating samples: summed metrics
    # counted those twice (101 samples on 2 ranks: accuracy over 102).
    for n, world, size in [(101, 2, 64), (9, 2, 4), (1, 2, 4), (10, 3, 3), (129, 2, 64)]:
        counted, lengths = [], set()
        for rank in range(world):
            val = _FakeRanks(rank, world).dataloader(_Items(n), size, shuffle=False, pad=False)
            made = 0
            for x, i in val:
                made += 1
                assert len(x) == len(i)
                if not val.empty:
                    counted += i.tolist()
            lengths.add((made, len(val)))
        assert len(lengths) == 1 and sorted(counted) == list(range(n)), (n, world, lengths)


# ---------------------------------------------------------------- real process groups


def _ddp_worker(rank, world, port, root, runs):
    """Each (kind, stage) of `runs` in turn, in one process group, into root/KIND-STAGE."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for kind, stage in runs:
            out = os.path.join(root, f"{kind}-{stage}")
            os.makedirs(out, exist_ok=True)
            _train_and_restore(rank, world, out, kind, stage)
    finally:
        dist.destroy_process_group()


def _train_and_restore(rank, world, out, kind, stage):
    import torch.distributed as dist

    if kind == "ddp":
        s = DDPStrategy()
    else:
        s = DeepSpeedStrategy(deepspeed={"zero_stage": stage, "precision": None, "config_file": None})
        s.batch_size = 4
    model = _model(seed=rank)  # different on purpose: wrapping must sync them
    model, opt, _ = s.distributed(model, torch.optim.Adam(model.parameters(), lr=0.05))
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    batches = TensorBatches([x, y], s, 4, shuffle=True, pad=True, seed=0)
    for bx, by in batches:
        with s.micro_batch():
            loss = nn.functional.mse_loss(model(bx), by)
            s.backward(loss)
        s.step()
    total = s.all_reduce(torch.tensor([float(rank + 1)]))
    params = _params(s)
    ckpt = os.path.join(out, "ckpt" if kind == "ddp" else f"ckpt-{rank}")
    if kind != "ddp":  # each rank its own dir, merged later as Ray Train does
        s.save_checkpoint(ckpt, {"epoch": 3})
        dist.barrier()
        if rank == 0:
            import shutil
            for r in range(world):
                shutil.copytree(os.path.join(out, f"ckpt-{r}"), os.path.join(out, "merged"),
                                dirs_exist_ok=True)
        dist.barrier()
        ckpt = os.path.join(out, "merged")
    else:
        s.save_checkpoint(ckpt, {"epoch": 3})
    with _gathered(s, modify=True), torch.no_grad():
        for p in s.unwrap().parameters():
            p.add_(1.0)  # clobber, then restore
    extra = s.load_checkpoint(ckpt)
    restored = _params(s)
    torch.save({"params": params, "restored": restored, "total": total, "extra": extra,
                "steps": len(batches)}, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()  # no rank leaves the group while another still talks to it (gloo aborts)


def _gathered(s, modify=False):
    """Whole parameters: ZeRO-3 keeps only each rank's partition of them."""
    if getattr(s, "zero_stage", 0) != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(s.unwrap().parameters()), modifier_rank=0 if modify else None)


def _params(s):
    with _gathered(s):
        return torch.cat([p.detach().clone().flatten() for p in s.unwrap().parameters()])


def _run(root, runs):
    """Two ranks, one process group, for all of `runs` ((kind, stage) each); the ranks' results
    by run. One spawn for several runs: each rank's import of DeepSpeed is most of the time."""
    mp.spawn(_ddp_worker, args=(2, free_port(), str(root), runs), nprocs=2, join=True)
    return {run: [torch.load(root / f"{run[0]}-{run[1]}" / f"rank{r}.pt", weights_only=False) for r in range(2)]
            for run in runs}


@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory):
    """Two ranks under ZeRO stages 1, 2 and 3 in turn: (ranks' results, folder) by stage."""
    pytest.importorskip("deepspeed")
    root = tmp_path_factory.mktemp("zero")
    runs = _run(root, [("deepspeed", stage) for stage in (1, 2, 3)])
    return {stage: (runs[("deepspeed", stage)], root / f"deepspeed-{stage}") for stage in (1, 2, 3)}


def test_ddp_ranks_stay_in_sync_and_checkpoints_round_trip(tmp_path):
    ((r0, r1),) = _run(tmp_path, [("ddp", 0)]).values()
    assert torch.equal(r0["params"], r1["params"])      # one model, trained on both shards
    assert r0["total"].item() == r1["total"].item() == 3.0
    assert r0["steps"] == r1["steps"] == 8               # 64 samples / 2 ranks / batch 4
    assert torch.equal(r0["restored"], r0["params"]) and torch.equal(r1["restored"], r1["params"])
    assert r0["extra"]["epoch"] == 3
    assert [p.name for p in (tmp_path / "ddp-0").iterdir() if p.is_dir()] == ["ckpt"]  # rank 0 wrote it


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_zero_trains_in_sync_and_restores_its_sharded_checkpoint(zero_runs, stage):
    """The trainer gets back what it saved, as under DDP, not DeepSpeed's own fields beside
    it (`param_shapes`, `ds_config`, `global_samples`, ...)."""
    (r0, r1), folder = zero_runs[stage]
    assert torch.equal(r0["params"], r1["params"])
    assert torch.equal(r0["restored"], r0["params"]) and torch.equal(r1["restored"], r1["params"])
    assert r0["extra"] == r1["extra"] == {"epoch": 3}
    shards = sorted(p.name for p in (folder / "merged" / "hpoc").iterdir())
    assert "zero_pp_rank_0_mp_rank_00_optim_states.pt" in shards
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt" in shards


def test_a_one_worker_deepspeed_trial_runs_in_its_own_process_group_and_resumes(tmp_path):
    pytest.importorskip("deepspeed")
    from hpoc.runtime import pipeline
    from runtime_plans import make_plan, write_toy

    workdir = write_toy(tmp_path / "study")
    ds = {"zero_stage": 2, "precision": None, "config_file": None}
    plan = make_plan(workdir, tmp_path / "results", resources={"strategy": "deepspeed", "deepspeed": ds})
    data = pipeline.load_data(plan)
    config = {"lr": 0.02, "hidden": 16, "epochs": 2}  # no batch_size: the loop's default
    runs = []
    for epochs in (2, 3):  # the second run finds the first one's checkpoint
        t = pipeline.import_target("toy:ToyTrainer", str(workdir))()
        s = Strategy.create("deepspeed", deepspeed=ds)
        runs.append(t.run_local(dict(config, epochs=epochs), data, directory=tmp_path / "run",
                                plan=plan, strategy=s))
        assert type(t.model).__name__ == "DeepSpeedEngine"
        # DeepSpeed was told a micro-batch of 1 while the loop trained on 64
        assert t.model.train_micro_batch_size_per_gpu() == t.batch_size == 64
    assert [r["epoch"] for r in runs[0]] == [1, 2] and [r["epoch"] for r in runs[1]] == [3]


def _deepspeed_alone(_rank, port, out):
    """One process (DeepSpeed's import and start are most of the time) for three facts of a
    single-rank DeepSpeed: it starts in a group made earlier, its windows end with the epoch,
    and ZeRO-1/2 drop a window that a loop left open."""
    import torch.distributed as dist

    # A group some earlier code made, and no LOCAL_RANK left behind: DeepSpeed must still start.
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 1, "precision": None, "config_file": None})
    s.batch_size = 4
    model = _model()
    engine, _, _ = s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    loss = engine(torch.ones(4, 4)).sum()
    engine.backward(loss)
    engine.step()
    with open(os.path.join(out, "ok"), "w") as f:
        f.write(type(engine).__name__)

    config = os.path.join(out, "ds.json")
    with open(config, "w") as f:
        json.dump({"train_batch_size": 16}, f)  # 4 micro-batches of 4 per step, as DeepSpeed derives
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 2, "precision": None, "config_file": config})
    s.batch_size = 4
    model = _model()
    model, _, _ = s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    stepped = []
    for batches in (6, 4):  # two epochs, the first of 6 micro-batches
        for i in range(batches):
            with s.micro_batch(last=i == batches - 1):
                s.backward(model(torch.ones(4, 4)).sum())
            stepped.append(s.step())
    torch.save(stepped, os.path.join(out, "stepped.pt"))

    # ZeRO-1 and -2, a loop that breaks part way through an epoch: the window it left open
    # is dropped with the epoch
    bias = {}
    for stage in (1, 2):  # one process for both: DeepSpeed's start is most of the time
        s = DeepSpeedStrategy(grad_accumulation_steps=4, deepspeed={"zero_stage": stage})
        s.batch_size = 4
        model = nn.Linear(4, 1)
        nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
        engine, _, _ = s.distributed(model, torch.optim.SGD(model.parameters(), lr=1.0))
        bias[stage] = []
        for batches in (5, 4):  # the first epoch's loop breaks after 5: a window of 1 left open
            for _ in range(batches):
                with s.micro_batch():  # zero inputs: each micro-batch's bias gradient is 1/8
                    s.backward(engine(torch.zeros(4, 4)).mean() * 0.125)
                s.step()
            s.close_window()
            bias[stage].append(s.unwrap().bias.item())
    torch.save(bias, os.path.join(out, "bias.pt"))



@pytest.fixture(scope="module")
def deepspeed_alone(tmp_path_factory):
    """The folder `_deepspeed_alone` wrote to; the tests below only read it."""
    pytest.importorskip("deepspeed")
    out = tmp_path_factory.mktemp("deepspeed-alone")
    mp.spawn(_deepspeed_alone, args=(free_port(), str(out)), nprocs=1, join=True)
    return out


def test_deepspeed_accumulation_ends_with_the_epoch(deepspeed_alone):
    """The engine counted its own windows: the 2 micro-batches left at an epoch's end did
    not step and went into the next epoch's first window (as under DDP, `last` steps)."""
    stepped = torch.load(deepspeed_alone / "stepped.pt")
    assert stepped == [False, False, False, True, False, True] + [False, False, False, True]


def test_deepspeed_zero_1_and_2_drop_a_window_a_loop_left_open(deepspeed_alone):
    """ZeRO-2 kept the dropped micro-batch's gradient in its own buffers, which
    `zero_grad()` does not clear: the next window stepped on 5 micro-batches' (-0.28125)."""
    bias = torch.load(deepspeed_alone / "bias.pt")
    assert bias == {1: [-0.125, -0.25], 2: [-0.125, -0.25]}  # a window's step: lr 1 x 4 x 1/8 / 4


def test_deepspeed_starts_in_a_group_made_earlier_without_local_rank(deepspeed_alone):
    assert (deepspeed_alone / "ok").read_text() == "DeepSpeedEngine"


def test_a_checkpoint_of_another_optimizer_gives_its_weights_and_a_fresh_optimizer(tmp_path):
    """PBT mutates `optimizer.name`: an exploiting trial with Adam loads a donor's SGD
    checkpoint. Adam cannot load SGD's state (KeyError 'step'), which made the checkpoint
    look unreadable and the trial start over from epoch 0."""
    torch.manual_seed(0)
    donor = Strategy(device="cpu")
    model = nn.Linear(4, 1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    donor.distributed(model, sgd)
    nn.functional.mse_loss(model(torch.ones(2, 4)), torch.zeros(2, 1)).backward()
    sgd.step()
    donor.save_checkpoint(tmp_path / "ckpt", {"epoch": 3})

    own = Strategy(device="cpu")
    mine = nn.Linear(4, 1)
    adam = torch.optim.Adam(mine.parameters(), lr=0.01)
    own.distributed(mine, adam)
    assert own.load_checkpoint(tmp_path / "ckpt") == {"epoch": 3}
    assert torch.equal(mine.weight, model.weight)  # the donor's weights
    assert not adam.state and adam.param_groups[0]["lr"] == 0.01  # a fresh Adam
    nn.functional.mse_loss(mine(torch.ones(2, 4)), torch.zeros(2, 1)).backward()
    adam.step()

    same = Strategy(device="cpu")  # the same kind of optimizer: its state is loaded
    other = nn.Linear(4, 1)
    same.distributed(other, torch.optim.SGD(other.parameters(), lr=0.5, momentum=0.1))
    same.load_checkpoint(tmp_path / "ckpt")
    assert same.optimizer.state and same.optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("file, ours, stage", [({}, None, 2), ({"zero_optimization": {"stage": 3}}, None, 3),
                                               ({}, 1, 1)])
def test_a_deepspeed_config_file_without_a_zero_stage_gets_the_default_not_stage_0(tmp_path, file, ours, stage):
    """With a config file the plan's `zero_stage` is null unless the spec sets it; a file
    that sets none trained under ZeRO stage 0, which refuses a plain `loss.backward()`."""
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": ours, "precision": None, "config_file": str(path)})
    assert s.ds_config()["zero_optimization"]["stage"] == stage


def test_a_deepspeed_nvme_path_is_expanded_on_the_node(tmp_path, monkeypatch):
    """`"nvme_path": "$LOCAL_SCRATCH/zero"` (a node-local disk, as CSC's clusters name it):
    DeepSpeed took it literally and swapped to a directory named "$LOCAL_SCRATCH"."""
    monkeypatch.setenv("LOCAL_SCRATCH", str(tmp_path / "nvme"))
    monkeypatch.delenv("HPOC_NO_SUCH_DIR", raising=False)
    zero = {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "$LOCAL_SCRATCH/zero"},
            "offload_optimizer": {"device": "nvme", "nvme_path": "${LOCAL_SCRATCH}/opt"}}
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": zero}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)})
    got = s.ds_config()["zero_optimization"]
    assert got["offload_param"]["nvme_path"] == str(tmp_path / "nvme" / "zero")
    assert got["offload_optimizer"]["nvme_path"] == str(tmp_path / "nvme" / "opt")
    zero["offload_param"]["nvme_path"] = "$HPOC_NO_SUCH_DIR/zero"
    path.write_text(json.dumps({"zero_optimization": zero}))
    with pytest.raises(ValueError, match=r"nvme_path` \"\$HPOC_NO_SUCH_DIR/zero\" uses a variable that is not set"):
        s.ds_config()


def test_auto_values_inside_a_deepspeed_config_files_sections_are_filled_in(tmp_path):
    """`"zero_optimization": {"stage": "auto", ...}` (as HF-style files write it): the spec's
    zero_stage, as HP804 promises; DeepSpeed itself read "auto" as stage 0."""
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": "auto", "overlap_comm": True},
                                "bf16": {"enabled": "auto"}}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 3, "precision": None, "config_file": str(path)})
    config = s.ds_config()
    assert config["zero_optimization"] == {"stage": 3, "overlap_comm": True}
    assert config["bf16"] == {"enabled": s.precision == "bf16"}


@pytest.mark.parametrize("file, ours, engine", [
    ({"fp16": {"enabled": True}}, "bf16", "fp16"),     # bf16 GPU, `precision = auto`: both were enabled
    ({"bf16": {"enabled": True}}, "fp32", "bf16"),     # fp32 inputs reached a bf16 engine
    ({"bf16": {"enabled": False}}, "bf16", "fp32"),    # bf16 inputs reached an fp32 engine
    ({"bf16": {"enabled": "auto"}}, "bf16", "bf16"),   # left to hpoc
    ({"fp16": {"loss_scale": 0}}, "fp16", "fp32"),   # DeepSpeed reads a section without `enabled` as off
    ({}, "fp16", "fp16"),
])  # fmt: skip
def test_a_deepspeed_config_files_precision_is_the_trials(tmp_path, file, ours, engine):
    """The file's `fp16`/`bf16` sections win (docs/trainer.md), so the section hpoc fills in
    and the dtype it gives inputs follow them: DeepSpeed refused a file's fp16 beside hpoc's
    bf16 ("cannot be simultaneously enabled") in every trial on a bf16 GPU."""
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": ours, "config_file": str(path)},
                          device="cpu")
    s.precision = ours  # as on a GPU (on CPU the strategy trains in fp32)
    config = s.ds_config()
    enabled = [k for k in ("bf16", "fp16") if config[k].get("enabled")]
    assert (s.precision, enabled) == (engine, [engine] if engine != "fp32" else [])


@pytest.mark.parametrize("enabled, engine", [("false", "fp32"), ("False", "fp32"), ("0", "fp32"), ("no", "fp32"),
                                             ("off", "fp32"), (0, "fp32"), ("true", "bf16"), ("yes", "bf16"), (1, "bf16")])
def test_a_deepspeed_config_files_enabled_string_is_read_as_deepspeed_reads_it(enabled, engine):
    """`"enabled": "false"` in a plan built without `hpoc check` (which refuses it): DeepSpeed
    reads it as false, hpoc took any string as on and gave an fp32 engine bf16 inputs."""
    ours = "fp32" if engine == "bf16" else "bf16"  # the spec's precision, which the file's section overrides
    assert file_precision({"bf16": {"enabled": enabled}}, ours) == engine


def test_a_deepspeed_config_files_enabled_value_deepspeed_refuses_is_named():
    with pytest.raises(ValueError, match=r'`fp16\.enabled` is "maybe": DeepSpeed reads true or false'):
        file_precision({"fp16": {"enabled": "maybe"}}, "bf16")


@pytest.mark.parametrize("file, batch, accumulate, engine", [
    ({"train_batch_size": 64}, 16, 1, (64, 16, 4)),          # DeepSpeed derives the accumulation
    ({"train_batch_size": 64}, None, 1, (64, 64, 1)),        # and the micro-batch, when no batch_size
    ({"train_batch_size": 64}, 16, 2, None),                  # the trainer's own accumulation is kept: 16 × 2 ≠ 64
    ({"train_batch_size": 64, "gradient_accumulation_steps": 2}, 32, 1, (64, 32, 2)),
    ({"train_batch_size": 64, "gradient_accumulation_steps": "auto"}, 32, 1, (64, 32, 2)),
    ({}, 16, 2, (32, 16, 2)),
])  # fmt: skip
def test_a_deepspeed_config_files_train_batch_size_is_split_as_deepspeed_does(tmp_path, file, batch, accumulate,
                                                                              engine):
    """A file's `train_batch_size` (the global batch) and the searched `batch_size`: hpoc set
    `gradient_accumulation_steps = 1` beside them, and DeepSpeed refused every trial whose
    batch_size × workers was not the file's total."""
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config")
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)},
                          grad_accumulation_steps=accumulate, device="cpu")
    s.batch_size = batch
    if engine is None:
        with pytest.raises(AssertionError, match="train_batch_size is not equal"):
            deepspeed_config.DeepSpeedConfig(s.ds_config())
        return
    c = deepspeed_config.DeepSpeedConfig(s.ds_config())
    assert (c.train_batch_size, c.train_micro_batch_size_per_gpu, c.gradient_accumulation_steps) == engine


@pytest.mark.parametrize("file, clipping", [({}, 0.0), ({"gradient_clipping": 0.5}, 0.5)])
def test_deepspeed_clips_gradients_only_when_its_config_file_says_so(tmp_path, file, clipping):
    """DeepSpeed 0.19 clips at norm 1.0 by default: a trainer's steps under DeepSpeed were not
    its steps under DDP (no clipping), and nothing said so."""
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config")
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)},
                          device="cpu")
    s.batch_size = 8
    assert deepspeed_config.DeepSpeedConfig(s.ds_config()).gradient_clipping == clipping
    assert deepspeed_config.DeepSpeedConfig(DeepSpeedStrategy(device="cpu").ds_config()).gradient_clipping == 0.0


class _PartlyUsed(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 1), nn.Linear(4, 1)  # e.g. a head of another task

    def forward(self, x):
        return self.used(x)


@pytest.mark.parametrize("spec, trainer, used", [(None, False, False), (None, True, True), (True, False, True),
                                                  (False, True, False)])
def test_the_specs_find_unused_parameters_wins_over_the_trainers(spec, trainer, used):
    from hpoc.runtime.trainer import Trainer
    from hpoc.runtime.trial import make_strategy

    plan = {"resources": {"strategy": "ddp", "deepspeed": None, "find_unused_parameters": spec, "gpus_per_worker": 0},
            "training": {"precision": "fp32", "compile": False}}
    cls = type("T", (Trainer,), {"find_unused_parameters": trainer})
    assert make_strategy(plan, cls(), distributed=True).find_unused_parameters is used


def _unused_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from hpoc.runtime.trainer import Trainer
    from hpoc.runtime.trial import make_strategy

    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        trainer = type("T", (Trainer,), {"find_unused_parameters": True})()
        plan = {"resources": {"strategy": "ddp", "deepspeed": None, "gpus_per_worker": 0},
                "training": {"precision": "fp32", "compile": False}}
        s = make_strategy(plan, trainer, distributed=True)
        model = _PartlyUsed()
        model, _, _ = s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
        for _ in range(2):  # the second forward is where DDP refused
            with s.micro_batch():
                s.backward(model(torch.ones(2, 4)).sum())
            s.step()
        torch.save(True, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # as above
    finally:
        dist.destroy_process_group()


def test_a_trainer_whose_model_leaves_parameters_unused_trains_under_ddp(tmp_path):
    """DDP refused the second step of a model with a parameter the loss does not use ("Expected
    to have finished reduction ... pass find_unused_parameters=True"), which hpoc's loop gave
    a trainer no way to pass: the trainer's `find_unused_parameters` now reaches DDP."""
    mp.spawn(_unused_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt"]


def test_a_checkpoint_gives_back_only_the_extra_it_was_given(tmp_path):
    """A checkpoint with an lr scheduler's state, loaded where there is none (a trainer of
    another kind resumed on it): the scheduler's state came back as if the trainer saved it."""
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = Strategy(device="cpu")
    saver.distributed(model, opt, torch.optim.lr_scheduler.StepLR(opt, 1))
    saver.save_checkpoint(tmp_path / "ckpt", {"epoch": 3})
    loader = Strategy(device="cpu")
    other = nn.Linear(4, 1)
    loader.distributed(other, torch.optim.SGD(other.parameters(), lr=0.1))
    assert loader.load_checkpoint(tmp_path / "ckpt") == {"epoch": 3}


# An HF Trainer's DeepSpeed file (its ZeRO-2 example): the values it left to "auto".
HF_FILE = {"bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto", "loss_scale": 0},
           "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                     "weight_decay": "auto",
                                                     "torch_adam": True}},  # no FusedAdam to build
           "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                        "warmup_num_steps": 10}},
           "zero_optimization": {"stage": 2, "overlap_comm": True, "reduce_bucket_size": "auto"},
           "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 2000,
           "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "wall_clock_breakdown": False}


def _hf_strategy(port, out):
    """A one-rank gloo group and a DeepSpeed strategy of `HF_FILE` at batch_size 8."""
    import torch.distributed as dist

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    config = os.path.join(out, "ds.json")
    with open(config, "w") as f:
        json.dump(HF_FILE, f)
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": config}, device="cpu")
    s.batch_size = 8
    return s


def _hf_engine(_rank, port, out):
    """A real engine from `HF_FILE`, the trainer's AdamW built from the trial's values."""
    s = _hf_strategy(port, out)
    model = nn.Linear(4, 1)
    engine, optimizer, _ = s.distributed(model, torch.optim.AdamW(model.parameters(), lr=0.003, weight_decay=0.05,
                                                                   betas=(0.8, 0.9), eps=1e-6))
    group = optimizer.param_groups[0]
    torch.save({"group": {"weight_decay": group["weight_decay"], "betas": tuple(group["betas"]), "eps": group["eps"]},
                "max_lrs": engine.lr_scheduler.max_lrs, "min_lrs": engine.lr_scheduler.min_lrs,
                "clipping": engine.gradient_clipping(), "micro": engine.train_micro_batch_size_per_gpu()},
               os.path.join(out, "engine.pt"))


def test_an_hf_deepspeed_files_auto_values_reach_the_engine_from_the_trial(tmp_path):
    """hpoc refused such a file at check: the learning rate, weight decay, betas and eps
    come from the trainer's optimizer (built from the trial's config), the warm-up's peak is
    that learning rate and gradients are not clipped, as in hpoc's other loops."""
    pytest.importorskip("deepspeed")
    mp.spawn(_hf_engine, args=(free_port(), str(tmp_path)), nprocs=1, join=True)
    got = torch.load(tmp_path / "engine.pt")
    assert got["group"] == {"weight_decay": 0.05, "betas": (0.8, 0.9), "eps": 1e-6}
    assert (got["max_lrs"], got["min_lrs"]) == ([0.003], [0.0])
    assert (got["clipping"], got["micro"]) == (0.0, 8)


def _two_group_engine(_rank, port, out):
    """A real engine from `HF_FILE`, the trainer's AdamW in two groups (no weight decay on
    the bias, as many trainers do)."""
    s = _hf_strategy(port, out)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.AdamW([{"params": [model.weight], "weight_decay": 0.05},
                                   {"params": [model.bias], "weight_decay": 0.0, "lr": 0.001}], lr=0.003)
    engine, ds_optimizer, _ = s.distributed(model, optimizer)
    torch.save({"decay": [g["weight_decay"] for g in ds_optimizer.param_groups], "max_lrs": engine.lr_scheduler.max_lrs},
               os.path.join(out, "groups.pt"))
    torch.distributed.destroy_process_group()  # one rank: none to wait for


def test_an_hf_deepspeed_files_auto_optimizer_keeps_the_trainers_param_groups(tmp_path):
    """DeepSpeed's optimizer got one group with the first group's values: the bias, which the
    trainer kept free of weight decay at its own rate, was decayed at the weights' rate
    (the file's warm-up rises to each group's rate)."""
    pytest.importorskip("deepspeed")
    mp.spawn(_two_group_engine, args=(free_port(), str(tmp_path)), nprocs=1, join=True)
    assert torch.load(tmp_path / "groups.pt") == {"decay": [0.05, 0.0], "max_lrs": [0.003, 0.001]}


@pytest.mark.parametrize("params, optimizer, message", [
    ({"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": "auto"}}}, "adamw",
     r"`scheduler.params.warmup_num_steps` is \"auto\", which hpoc does not fill in"),
    ({"optimizer": {"type": "AdamW", "params": {"betas": "auto"}}}, "sgd",
     r"`optimizer.params.betas` is \"auto\", filled in from the trainer's optimizer, and its SGD has no `betas`"),
    ({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}, None,
     r"`optimizer.params.lr` is \"auto\", filled in from the trainer's optimizer, and the trainer gave none"),
])  # fmt: skip
def test_an_hf_deepspeed_files_auto_values_hpoc_cannot_know_are_named(tmp_path, params, optimizer, message):
    """DeepSpeed took the string for a number deep in its scheduler or optimizer."""
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(params))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    made = {"adamw": lambda: torch.optim.AdamW(model.parameters(), lr=0.01),
            "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.01), None: lambda: None}[optimizer]()
    with pytest.raises(ValueError, match=message):
        s.ds_config(optimizer=made)


def test_a_deepspeed_config_hpoc_cannot_fill_fails_its_trial_once(tmp_path):
    """A ValueError from reading the file was retried by Ray, every retry failing alike: the
    trial's error is a TrainerError, which fails it at once (retry.py)."""
    from hpoc.runtime.retry import deterministic

    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": "auto"}}}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    with pytest.raises(Exception, match="warmup_num_steps") as raised:
        s.distributed(model, torch.optim.AdamW(model.parameters(), lr=0.01))
    assert deterministic(raised.value) is not None


def test_a_trainers_lr_scheduler_beside_a_deepspeed_files_optimizer_is_refused(tmp_path):
    """The file's optimizer trained; the trainer's scheduler, stepped every epoch, moved the
    learning rate of the trainer's own optimizer, which trained nothing: a constant rate."""
    from hpoc.runtime.returns import TrainerError

    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    with pytest.raises(TrainerError, match=r"the trainer's lr scheduler \(StepLR\) would step an optimizer that "
                                           r"trains nothing"):
        s.distributed(model, optimizer, scheduler)


@pytest.mark.parametrize("amp", [{"enabled": "auto", "opt_level": "auto"}, {"enabled": False}, {"enabled": "false"}])
def test_an_hf_deepspeed_files_apex_section_that_is_off_is_dropped(tmp_path, amp):
    """Older HF files carry `"amp": {"enabled": "auto"}` (Apex, off unless the HF Trainer's
    fp16 backend was Apex): DeepSpeed refused the section in every trial."""
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config")
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"amp": amp}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)}, device="cpu")
    s.batch_size = 8
    config = s.ds_config()
    assert "amp" not in config
    deepspeed_config.DeepSpeedConfig(config)  # refused "NVIDIA Apex AMP integration has been removed"


@pytest.mark.parametrize("file, said", [
    ({"zero_optimization": {"stage": 2, "offload_optimiser": {"device": "cpu"}}},
     "DeepSpeed refuses the config's `zero_optimization.offload_optimiser`: it is not a setting DeepSpeed "
     "knows (a misspelling?)"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "gpu"}}},
     "DeepSpeed refuses the config's `zero_optimization.offload_optimizer.device`: Input should be 'none', "
     "'cpu' or 'nvme'"),
])  # fmt: skip
def test_a_deepspeed_config_deepspeed_refuses_fails_its_trial_once_naming_the_key(tmp_path, monkeypatch, file, said):
    """Every trial failed, each retried, with "pydantic_core._pydantic_core.ValidationError: 1
    validation error for DeepSpeedZeroConfig": the key it refused only in error.txt."""
    deepspeed = pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    from hpoc.runtime.retry import deterministic
    from hpoc.runtime.returns import TrainerError

    def initialize(config, **_):  # as DeepSpeed reads the config, without starting an engine
        DeepSpeedZeroConfig(**config["zero_optimization"])

    monkeypatch.setattr(deepspeed, "initialize", initialize)
    monkeypatch.setattr(DeepSpeedStrategy, "init", lambda self: None)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": None, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    with pytest.raises(TrainerError) as raised:
        s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert str(raised.value).splitlines()[0] == said
    assert deterministic(raised.value) is not None


@pytest.mark.parametrize("file, said", [
    ({"elasticity": {"enabled": False}}, "Elastic training has been removed; the 'elasticity' configuration block"),
    ({"checkpoint": {"tag_validation": "Sometimes"}}, "Checkpoint config contains invalid tag_validation"),
])  # fmt: skip
def test_a_deepspeed_config_deepspeeds_own_check_refuses_fails_its_trial_once(tmp_path, monkeypatch, file, said):
    """DeepSpeed 0.19 refuses a section it removed (`elasticity`, `sparse_attention`, `nebula`,
    an old Megatron file's) with its DeepSpeedConfigError, no ValueError: every trial failed,
    each retried, a traceback in each error.txt."""
    deepspeed = pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig

    from hpoc.runtime.retry import deterministic

    monkeypatch.setattr(deepspeed, "initialize", lambda config, **_: DeepSpeedConfig(config))
    monkeypatch.setattr(DeepSpeedStrategy, "init", lambda self: None)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(file))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 2, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    with pytest.raises(Exception) as raised:
        s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    first = str(raised.value).splitlines()[0]
    assert first.startswith(f"DeepSpeed refuses the config: {said}")
    assert str(raised.value).splitlines()[1] == "  help: remove or mend that part of the DeepSpeed config file"
    assert deterministic(raised.value) is not None


@pytest.mark.parametrize("file, key", [
    ({"weight_quantization": {"bogus": 1}}, "weight_quantization.bogus"),
    ({"csv_monitor": {"enabled": False, "bogus": 1}}, "csv_monitor.bogus"),
    ({"tensor_parallel": {"bogus": 1}}, "tensor_parallel.bogus"),
])  # fmt: skip
def test_deepspeeds_refusal_names_the_key_by_the_files_section(file, key):
    """Its config model's name is no key of the file: `WeightQuantConfig.bogus` was said."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig

    from hpoc.runtime.deepspeed_refused import refusal

    with pytest.raises(Exception) as raised:
        DeepSpeedConfig({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, **file})
    assert refusal(raised.value) == f"DeepSpeed refuses the config's `{key}`: it is not a setting DeepSpeed knows " \
        "(a misspelling?)"


def test_another_error_of_deepspeeds_start_is_left_as_it_is(tmp_path, monkeypatch):
    deepspeed = pytest.importorskip("deepspeed")
    raised = ValueError("not a config's refusal")

    def initialize(**_):
        raise raised

    monkeypatch.setattr(deepspeed, "initialize", initialize)
    monkeypatch.setattr(DeepSpeedStrategy, "init", lambda self: None)
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 2, "precision": None, "config_file": None}, device="cpu")
    model = nn.Linear(4, 1)
    with pytest.raises(ValueError) as got:
        s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert got.value is raised and got.value.__cause__ is None


def test_a_half_precision_the_device_lacks_fails_its_trial_once_naming_the_section(monkeypatch, tmp_path):
    """A GPU config's `"fp16": {"enabled": true}` on CPU workers: "ValueError: Type fp16 is not
    supported on your device.", retried as if it might pass."""
    deepspeed = pytest.importorskip("deepspeed")
    from hpoc.runtime.retry import deterministic

    def initialize(**_):  # DeepSpeed's engine, checking its dtype against the accelerator
        raise ValueError("Type fp16 is not supported on your device.")

    monkeypatch.setattr(deepspeed, "initialize", initialize)
    monkeypatch.setattr(DeepSpeedStrategy, "init", lambda self: None)
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"fp16": {"enabled": True}}))
    s = DeepSpeedStrategy(deepspeed={"zero_stage": 2, "precision": None, "config_file": str(path)}, device="cpu")
    model = nn.Linear(4, 1)
    with pytest.raises(Exception) as raised:
        s.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert deterministic(raised.value) is not None
    assert str(raised.value).splitlines()[0] == (
        "DeepSpeed refuses the config's `fp16.enabled`: this device (cpu) does not support fp16")
    assert 'set `"enabled": "auto"`' in str(raised.value)
