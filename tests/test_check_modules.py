"""HP803 for pipeline modules that are nowhere to be found: `hpoc check` said "valid" of a
study copied away from its data.py and trainer.py, or whose `trainer = model:Net` names a
file called net.py, and every trial failed at its first import."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hpo_util import EXAMPLES, installed, own_trainer, where
from hpoc.compiler import compile_path

YAML = Path(__file__).resolve().parents[1] / "examples/itwinai/config.yaml"


def missing(spec: Path) -> list:
    return [w for w in compile_path(spec).warnings if w.code == "HP803"]


def study(tmp_path: Path, pipeline: str) -> Path:
    spec = tmp_path / "study.hpo"
    spec.write_text(f'study "m"\npipeline {{\n{pipeline}\n}}\n', encoding="utf-8")
    return spec


def test_a_spec_copied_away_from_its_modules_is_warned_once_per_module(tmp_path: Path) -> None:
    spec = tmp_path / "study.hpo"
    shutil.copy(EXAMPLES["digits"], spec)
    data, trainer = missing(spec)  # a warning: the nodes' Python may have them
    assert (where(data), data.message) == ((6, 14), "getter, splitter: no module `data` beside the spec, "
                                                    "nor installed here")
    assert data.notes == ("looked for data.py and data/__init__.py beside the spec, then on this Python's path",)
    assert data.help == "put data.py beside the spec, or install it for the Python the trials run with"
    assert (where(trainer), trainer.message) == ((8, 14), "trainer: no module `trainer` beside the spec, "
                                                          "nor installed here")
    for module in ("data.py", "trainer.py"):
        shutil.copy(EXAMPLES["digits"].parent / module, tmp_path / module)
    assert missing(spec) == []


def test_a_module_named_unlike_its_file_lists_the_files_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(own_trainer("Net"))
    (w,) = missing(study(tmp_path, "trainer = model:Net"))
    assert w.notes[1] == "beside the spec: `net.py`"
    (tmp_path / "data").mkdir()  # a dataset folder: no `data` module, and no name to suggest for it
    (w,) = missing(study(tmp_path, "trainer = net:Net\ngetter = data:G"))
    assert (w.message, w.help) == ("getter: no module `data` beside the spec, nor installed here",
                                   "put data.py beside the spec, or install it for the Python the trials run with")


def test_a_package_path_is_looked_for_under_the_spec_directory(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "nets.py").write_text(own_trainer("Net"))
    (w,) = missing(study(tmp_path, "trainer = models.net:Net"))
    assert w.help == "did you mean `models.nets`?"
    assert missing(study(tmp_path, "trainer = models.nets:Net")) == []  # a namespace package
    # a module beside the spec owns its name, so `helpers.sub` is not looked for elsewhere
    (tmp_path / "helpers.py").write_text("")
    (w,) = missing(study(tmp_path, "trainer = helpers.sub:T"))
    assert w.notes == ("looked for helpers/sub.py and helpers/sub/__init__.py beside the spec",
                       "helpers.py is a module, not a package: it holds no modules")


def test_a_module_written_as_its_file_name_is_told_to_drop_py(tmp_path: Path) -> None:
    """`trainer = trainer.py:T` (the file's name) was told that trainer.py holds no
    modules, with the hint to put `trainer/py.py` beside the spec."""
    (tmp_path / "trainer.py").write_text(own_trainer())
    (w,) = missing(study(tmp_path, "trainer = trainer.py:T"))
    assert w.help == "write `trainer:T`: a module is named without `.py`"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("class Net:\n    pass\n")
    (w,) = missing(study(tmp_path, "trainer = models.net.py:Net"))
    assert w.help == "write `models.net:Net`: a module is named without `.py`"


def test_an_installed_module_is_found_without_being_imported(tmp_path: Path) -> None:
    site = tmp_path / "site"  # not beside the spec: on the path only
    site.mkdir()
    (site / "heavy_trainer.py").write_text("raise ImportError('torch is not on a login node')\n")
    spec = study(tmp_path, "trainer = heavy_trainer:T")
    (w,) = missing(spec)
    assert w.message == "trainer: no module `heavy_trainer` beside the spec, nor installed here"
    with installed(site):
        assert missing(spec) == []
    assert "heavy_trainer" not in sys.modules


def test_the_yaml_front_end_warns_at_the_steps_class_path(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    shutil.copy(YAML, config)
    data, trainer = missing(config)
    assert (data.message, trainer.message) == (
        "getter, splitter: no module `data` beside the spec, nor installed here",
        "trainer: no module `trainer` beside the spec, nor installed here")
    lines = YAML.read_text(encoding="utf-8").splitlines()
    assert lines[data.line - 1][data.col - 1:].startswith("data.")
    assert lines[trainer.line - 1][trainer.col - 1:].startswith("trainer.")


def test_a_module_that_does_not_parse_is_said_once_for_all_its_steps(tmp_path: Path) -> None:
    (tmp_path / "data.py").write_text("class G(\n")
    (tmp_path / "t.py").write_text(own_trainer())
    (w,) = missing(study(tmp_path, "getter = data:G\nsplitter = data:S\ntrainer = t:T"))
    assert w.message.startswith("getter, splitter: `data` (data.py:1) has a syntax error")


def test_a_package_is_checked_before_a_module_of_its_name(tmp_path: Path) -> None:
    """Python imports `models/__init__.py`, not `models.py` beside it: a step is checked
    against the package's classes (`Net` was "not defined", and the study refused)."""
    (tmp_path / "models.py").write_text("class Old:\n    pass\n", encoding="utf-8")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text(
        own_trainer("Net", "\n    def __init__(self, width: int):\n        pass\n"), encoding="utf-8")
    spec = study(tmp_path, "  trainer = models:Net(width = 2)")
    assert [w.message for w in compile_path(spec).warnings if "models" in w.message] == []


def test_a_linked_spec_is_the_study_beside_its_target_as_a_linked_script_is_in_python(tmp_path: Path) -> None:
    """A study shared by a link (`ln -s /shared/study.hpo .`): its modules, relative paths and
    the jobs' directory were the link's, so its trainer.py was missing. Python puts a linked
    script's own directory on `sys.path`; a linked spec resolves beside its target too."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(EXAMPLES["digits"], shared / "digits.hpo")
    for module in ("data.py", "trainer.py"):
        shutil.copy(EXAMPLES["digits"].parent / module, shared / module)
    (tmp_path / "mine").mkdir()
    link = tmp_path / "mine" / "study.hpo"
    link.symlink_to(shared / "digits.hpo")
    result = compile_path(link)
    assert [w for w in result.warnings if w.code == "HP803"] == []
    source = result.plan["source"]
    assert (source["workdir"], source["file"]) == (str(shared.resolve()), "digits.hpo")  # the spec jobs check for edits
    assert Path(result.plan["storage"]["path"]).parent == shared.resolve()
    (shared / "trainer.py").rename(tmp_path / "mine" / "trainer.py")  # beside the link: not the study's
    (w,) = missing(link)
    assert w.notes[-1] == f"{link} links to {(shared / 'digits.hpo').resolve()}: its modules are looked for beside that"
    (tmp_path / "scratch").symlink_to(shared)  # a directory link on the way: the path as given
    plan = compile_path(tmp_path / "scratch" / "digits.hpo").plan
    assert plan["source"]["workdir"] == str(tmp_path / "scratch")


HOOKS_SPEC = 'study "h"\npipeline { trainer = trainer:T, getter = data:G }\nspace { epochs = 1 }\n'


def hook_diagnostics(tmp_path: Path, source: str) -> list:
    """`hpoc check`'s errors about the trainer module `source`."""
    import textwrap

    from hpoc.errors import SpecError

    (tmp_path / "trainer.py").write_text(textwrap.dedent(source))
    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    try:
        compile_path(spec)
    except SpecError as exc:
        return [d for d in exc.diagnostics if d.severity == "error"]
    return []


def hook_errors(tmp_path: Path, source: str) -> list[str]:
    return [d.message for d in hook_diagnostics(tmp_path, source)]


def test_a_trainer_that_would_fail_every_trial_at_its_hooks_is_an_error_at_check_time(tmp_path: Path) -> None:
    """A trainer with no model, a hook hpoc cannot call, or one that returns nothing passed
    `hpoc check`; on a cluster the job then waited in the queue before the driver refused
    it, or (no return) before every trial failed."""
    said = hook_errors(tmp_path, """
        import hpoc
        from torch import nn

        class Base(hpoc.Trainer):
            def create_model(self):
                return nn.Linear(2, 2)

        class T(Base):
            def train_step(self, batch):
                loss = self.loss(self.model(batch[0]), batch[1])

            def validation_step(self, batch):
                raise NotImplementedError  # only raises: not a forgotten return
    """)
    assert said == ["trainer: `create_model(self)` (trainer.py:6) must be `create_model(self, config)`: "
                    "hpoc calls it so",
                    "trainer: `train_step` (trainer.py:10) returns nothing: hpoc trains on the loss it "
                    "returns"]
    (typo,) = hook_diagnostics(tmp_path, """
        import hpoc

        class T(hpoc.Trainer):
            def create_modle(self, config):
                return None
    """)
    assert typo.message == ("trainer: `T` (trainer.py:4) defines no model: implement `create_model(self, "
                            "config)` (or `create_model_loss_optimizer`)")
    assert typo.help == "`create_modle` (trainer.py:5) is not a hook hpoc calls: name it `create_model`"


def test_hooks_the_trainers_own_code_calls_or_that_the_source_cannot_tell_are_not_errors(tmp_path: Path) -> None:
    for source in (
        # its own loop calls the hooks as it likes
        "import hpoc\nclass T(hpoc.Trainer):\n    def train(self):\n        pass\n"
        "    def create_model(self):\n        pass\n",
        # itwinai style: the hook sets self.model, returns nothing
        "import hpoc\nclass T(hpoc.Trainer):\n    def create_model_loss_optimizer(self):\n        self.model = 1\n",
        # a base from another module, a decorator, a generator: unknown
        "import hpoc\nfrom lib import Base\nclass T(Base):\n    pass\n",
        "import hpoc, functools\nclass T(hpoc.Trainer):\n    @functools.cache\n    def create_model(self):\n"
        "        pass\n",
        "from hpoc import Trainer\nclass T(Trainer):\n    def create_model(self, config, *rest, scale=1):\n"
        "        return make(config)\n    def prepare_inputs(self, x):\n        yield x\n",
    ):
        assert hook_errors(tmp_path, source) == [], source


def test_a_trainer_class_with_no_base_is_an_error_at_check_time(tmp_path: Path) -> None:
    """`class T:` with hooks passed the check; the driver refused it after the queue wait
    ("does not subclass hpoc.Trainer")."""
    (bare,) = hook_diagnostics(tmp_path, "class T:\n    def create_model(self, config):\n        return 1\n")
    assert bare.message == ("trainer: `T` is a class that does not subclass `hpoc.Trainer`: hpoc drives "
                            "every trial through its methods")
    assert bare.help.startswith("write `class T(hpoc.Trainer):`")
    (via,) = hook_errors(tmp_path, "class Base(object):\n    pass\nclass T(Base):\n    def create_model("
                                   "self, config):\n        return 1\n")
    assert "(its base `Base`, trainer.py:1, has none)" in via
    for source in (  # an itwinai-style base, a base from elsewhere, a metaclass: not judged
            "from itwinai.torch.trainer import TorchTrainer\nclass T(TorchTrainer):\n    pass\n",
            "import lib\nclass T(lib.Base):\n    pass\n",
            "from hpoc.compat.itwinai import RayTorchTrainer\nclass T(RayTorchTrainer):\n    pass\n",
            "class T(metaclass=type):\n    pass\n"):
        assert hook_errors(tmp_path, source) == [], source


def test_loader_workers_beyond_a_trials_cpus_are_warned_at_check_time(tmp_path: Path) -> None:
    """`create_dataloaders(num_workers_dataloader=8)` in trials of 2 CPUs: 9 processes on 2
    cores, in silence (torch's own warning counts the node's cores)."""
    (tmp_path / "trainer.py").write_text(own_trainer(body="\n    def setup(self):\n        self.create_dataloaders("
                                                          "self.train_data, num_workers_dataloader=8)\n"))
    spec = tmp_path / "study.hpo"
    text = 'study "w"\npipeline { trainer = trainer:T }\nresources { cpus_per_worker = %d }\n'
    spec.write_text(text % 2)
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP804"]
    assert w.message == ("the trainer asks for 8 DataLoader workers (`num_workers_dataloader=8`, trainer.py:13), "
                         "and a trial has `cpus_per_worker = 2`: 9 processes share its 2 core(s), and slow the "
                         "trial and those beside it on the node")
    assert w.help == "set `cpus_per_worker = 9` in `resources`, or `num_workers_dataloader` to at most 1"
    assert where(w) == (3, 13)  # the setting to change
    spec.write_text(text % 8)  # 8 workers and the trial's own process: 9 on 8 cores, as the help counts
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP804"]
    assert w.help == "set `cpus_per_worker = 9` in `resources`, or `num_workers_dataloader` to at most 7"
    spec.write_text(text % 9)
    assert [w for w in compile_path(spec).warnings if w.code == "HP804"] == []


def test_the_check_knows_the_hooks_the_runtime_calls() -> None:
    from hpoc.compiler.trainer_hooks import HOOKS as CHECKED
    from hpoc.runtime.hooks import HOOKS

    assert {name: hook[:2] for name, hook in CHECKED.items()} == HOOKS


def test_the_check_knows_what_the_itwinai_compat_module_provides() -> None:
    """The check names what to import from hpoc.compat.itwinai, which it reads without
    importing (it needs torch): its list must be the module's `__all__`."""
    import ast

    import hpoc
    from hpoc.compiler.targets import ITWINAI_COMPAT

    tree = ast.parse((Path(hpoc.__file__).parent / "compat" / "itwinai.py").read_text(encoding="utf-8"))
    (exported,) = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert sorted(ITWINAI_COMPAT) == sorted(exported)


def test_a_trainer_that_moves_tensors_to_cuda_without_gpus_is_warned(tmp_path: Path) -> None:
    """`.cuda()` or `.to("cuda")` in a trainer whose trials have no GPU failed every trial
    (and its retries) with "Found no NVIDIA driver" once it ran."""
    import textwrap

    (tmp_path / "trainer.py").write_text(textwrap.dedent("""
        import hpoc, torch

        class T(hpoc.Trainer):
            def create_model(self, config):
                return Net().cuda()

            def train_step(self, batch):
                x, y = batch[0].to("cuda:0"), batch[1].to(device=torch.device("cuda"))
                return self.loss(self.model(x), y)

            def prepare_inputs(self, x):
                return x.cuda() if torch.cuda.is_available() else x  # guarded: fine
    """))
    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP804"]
    assert w.message == ("the trainer puts tensors on CUDA (trainer.py:6, trainer.py:9), but its trials "
                         "get no GPU (`gpus_per_worker = 0`): on a node without one every trial fails there, "
                         "and on one with GPUs it takes one Ray did not give it")
    assert w.help.startswith("leave devices to hpoc: batches arrive on the trial's device")
    spec.write_text(HOOKS_SPEC + "resources { gpus_per_worker = 1 }\n")
    assert [w for w in compile_path(spec).warnings if w.code == "HP804"] == []


def test_a_loop_of_its_own_that_never_reports_is_warned(tmp_path: Path) -> None:
    """A `train()` with no `self.report(...)` passed `hpoc check`; every trial then failed
    at its end (and before that, Ray's metric check stopped the study)."""
    import textwrap

    silent = textwrap.dedent("""
        import hpoc

        class T(hpoc.Trainer):
            def create_model(self, config):
                return Net()

            def train(self):
                self.setup()
                for epoch in range(self.restore(), self.epochs):
                    self.train_epoch(epoch)
    """)
    (tmp_path / "trainer.py").write_text(silent)
    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP801"]
    assert w.message == ("trainer: `T.train()` (trainer.py:8) never calls `self.report(...)`: its "
                         "trials report nothing, and each fails at its end")
    (tmp_path / "trainer.py").write_text(silent + "        self.report(metrics, epoch=epoch)\n")
    assert [w for w in compile_path(spec).warnings if w.code == "HP801"] == []


ITWINAI_LOOP = """
    import ray.train
    from ray import tune
    from hpoc.compat.itwinai import RayTorchTrainer

    class T(RayTorchTrainer):
        def create_model_loss_optimizer(self):
            self.model, self.optimizer, _ = self.strategy.distributed(Net(), None)

        def train(self, config, data):
            for epoch in range(config["epochs"]):
                REPORT
"""


def test_an_itwinai_loop_reporting_past_checkpoint_and_report_is_warned(tmp_path: Path) -> None:
    """`ray.train.report`, `tune.report` and itwinai's newer `self.ray_report` passed
    `hpoc check`; every trial then failed (Ray refusing the call, a missing method, or a
    trial ending with no report)."""
    import textwrap

    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)

    def told(report: str) -> list:
        (tmp_path / "trainer.py").write_text(textwrap.dedent(ITWINAI_LOOP).replace("REPORT", report))
        return [w for w in compile_path(spec).warnings if w.code == "HP801"]

    for call, line in (("ray.train.report", 12), ("tune.report", 12), ("self.ray_report", 12),
                       ("self.ray_train.report", 12)):
        (w,) = told(f"{call}({{'loss': 1.0}})")
        assert w.message.startswith(f"trainer: `T.train()` reports with `{call}(...)` (trainer.py:{line}): ")
        assert w.message.endswith("every trial fails there")
        assert "self.checkpoint_and_report(epoch, tuning_metrics=" in w.help
    (w,) = told("pass")
    assert w.message == ("trainer: `T.train()` (trainer.py:10) never calls `self.checkpoint_and_report(...)`: "
                         "its trials report nothing, and each fails at its end")
    assert told("self.checkpoint_and_report(epoch, tuning_metrics={'loss': 1.0})") == []


def test_itwinai_strategy_methods_hpoc_lacks_are_warned(tmp_path: Path) -> None:
    """`self.strategy.clean_up()` at a loop's end passed `hpoc check` and failed every trial
    after all its training."""
    import textwrap

    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    loop = ITWINAI_LOOP.replace("REPORT", "self.checkpoint_and_report(epoch, tuning_metrics={'loss': 1.0})")
    (tmp_path / "trainer.py").write_text(textwrap.dedent(loop) + "            self.strategy.clean_up()\n"
                                         "            self.strategy.clean_up()\n")
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP803" and w.message.startswith("trainer:")]
    assert w.message == ("trainer: `self.strategy.clean_up()` (trainer.py:13) is itwinai's; hpoc's strategies "
                         "have no `clean_up`: every trial fails there")
    assert w.help == "remove it: hpoc ends the process group with the trial"


def test_a_loop_of_its_own_that_never_restores_is_warned(tmp_path: Path) -> None:
    """A `train()` that reports and checkpoints but never calls `self.restore()`: a resumed
    or retried trial silently trained again from epoch 0, and a PBT exploit loaded nothing."""
    import textwrap

    loop = textwrap.dedent("""
        import hpoc

        class T(hpoc.Trainer):
            def create_model(self, config):
                return Net()

            def train(self):
                self.setup()
                for epoch in range(self.epochs):
                    self.report(self.train_epoch(epoch), epoch=epoch)
    """)
    (tmp_path / "trainer.py").write_text(loop)
    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP801"]
    assert w.message == ("trainer: `T.train()` (trainer.py:8) never calls `self.restore()`: a resumed, "
                         "retried, paused or exploited trial trains again from epoch 0")
    assert "for epoch in range(self.restore(), self.epochs)" in w.help
    spec.write_text(HOOKS_SPEC + "checkpoint { every = 0 }\n")  # no checkpoint to restore
    assert [w for w in compile_path(spec).warnings if w.code == "HP801"] == []
    spec.write_text(HOOKS_SPEC)
    (tmp_path / "trainer.py").write_text(loop.replace("range(self.epochs)", "range(self.restore(), self.epochs)"))
    assert [w for w in compile_path(spec).warnings if w.code == "HP801"] == []


SHAPE_TRAINER = """
    import hpoc
    from torch import nn


    class Net(nn.Module):
        def __init__(self, cfg, depth=1):
            super().__init__()
            self.body = nn.Sequential(*[nn.Linear(8, cfg["model"]["width"]) for _ in range(cfg.get("layers", 1))])
            self.drop = nn.Dropout(cfg["dropout"])


    class T(hpoc.Trainer):
        def create_model(self, config):
            hidden = int(config.get("hidden", 16))
            return nn.Sequential(nn.Linear(8, hidden), Net(config), nn.Linear(hidden, 3))

        def create_optimizer(self, model, config):
            return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
"""


def shape_warnings(tmp_path: Path, scheduler: str, space: str = "") -> list:
    import textwrap

    (tmp_path / "trainer.py").write_text(textwrap.dedent(SHAPE_TRAINER))
    spec = tmp_path / "study.hpo"
    spec.write_text('study "h"\npipeline { trainer = trainer:T, getter = data:G }\nobjective maximize val_accuracy\n'
                    "space {\n  epochs = 8\n  lr = loguniform(1e-3, 1e-1)\n  momentum = uniform(0.1, 0.9)\n"
                    "  dropout = uniform(0.0, 0.5)\n  hidden = qrandint(8, 32, 8)\n  layers = choice(1, 2)\n"
                    f"  model.width = choice(16, 32)\n  batch_size = choice(32, 64)\n{space}}}\n{scheduler}\n")
    with installed():
        return [w for w in compile_path(spec).warnings if w.code == "HP814"]


def test_pbt_mutating_what_the_model_is_built_from_is_a_warning(tmp_path: Path) -> None:
    """PBT copies a trial's weights into another trial's model: a mutated `hidden` made the
    two models' shapes differ, and the exploiting trial silently trained from scratch."""
    said = shape_warnings(tmp_path, "scheduler pbt { perturbation_interval = 2 }")  # mutates the whole space
    assert [w.message.split("`")[3] for w in said] == ["hidden", "layers", "model.width"], said
    assert said[0].message == ("`scheduler pbt` mutates `hidden`, which the trainer builds its model from "
                               "(trainer.py:15): an exploit loads another trial's weights, which do not fit a "
                               "model of another shape, and the exploiting trial fails")
    assert said[0].help.startswith("leave `hidden` out of `hyperparam_mutations`")
    assert said[2].message.split("(")[1].startswith("trainer.py:9)")  # read in Net(config)
    named = shape_warnings(tmp_path, "scheduler pbt { hyperparam_mutations { hidden = [8, 16], lr = "
                                     "loguniform(1e-3, 1e-1) } }")
    assert [where(w) for w in named] == [(14, 40)], named  # the mutation itself
    pb2 = shape_warnings(tmp_path, "scheduler pb2 { perturbation_interval = 2 }")
    assert [w.message.split("`")[3] for w in pb2] == ["hidden"]  # PB2 mutates bounded ones only


def test_pbt_mutating_rates_and_batch_sizes_is_quiet(tmp_path: Path) -> None:
    """lr, momentum and a dropout rate shape nothing; `batch_size` is read outside the model."""
    assert shape_warnings(tmp_path, "scheduler pbt { hyperparam_mutations { lr = loguniform(1e-3, 1e-1), "
                                    "momentum = [0.2, 0.5], dropout = uniform(0.0, 0.5), "
                                    "batch_size = [32, 64] } }") == []
    assert shape_warnings(tmp_path, "scheduler asha { max_t = 8 }") == []


def test_an_itwinai_trainer_building_its_model_from_training_config_is_warned_under_pbt(tmp_path: Path) -> None:
    """An itwinai trainer reads the trial config as `self.training_config` in its
    `create_model_loss_optimizer`: a mutated width there was not seen."""
    (tmp_path / "trainer.py").write_text(
        "from torch import nn\n"
        "from hpoc.compat.itwinai import RayTorchTrainer\n\n\n"
        "class T(RayTorchTrainer):\n"
        "    def create_model_loss_optimizer(self):\n"
        "        self.model = nn.Linear(8, self.training_config[\"width\"])\n")
    spec = tmp_path / "study.hpo"
    spec.write_text('study "h"\npipeline { trainer = trainer:T, getter = data:G }\nobjective maximize val_accuracy\n'
                    "space {\n  epochs = 8\n  lr = loguniform(1e-3, 1e-1)\n  width = choice(16, 32)\n}\n"
                    "scheduler pbt { perturbation_interval = 2 }\n")
    with installed():  # no error: its hooks are itwinai's, not hpoc.Trainer's
        said = [w for w in compile_path(spec).warnings if w.code == "HP814"]
    assert [w.message.split("`")[3] for w in said] == ["width"], said
    assert "(trainer.py:7)" in said[0].message


def test_a_getter_that_downloads_in_a_study_for_compute_nodes_is_warned(tmp_path: Path) -> None:
    """`FashionMNIST(root, download=True)` checked clean, then failed every job on nodes
    without internet (or waited on a firewall that drops the packets) after the queue."""
    (tmp_path / "trainer.py").write_text("import hpoc\n\nclass T(hpoc.Trainer):\n"
                                         "    def create_model(self, config):\n        return None\n")
    (tmp_path / "data.py").write_text(
        "import os\nfrom torchvision.datasets import FashionMNIST\n\nclass G:\n    def execute(self):\n"
        "        here = os.path.isdir('data')\n"
        "        train = FashionMNIST('data', train=True, download=True)\n"
        "        return train, FashionMNIST('data', train=False, download=not here)\n")
    spec = tmp_path / "study.hpo"
    spec.write_text(HOOKS_SPEC)
    assert not [w for w in compile_path(spec).warnings if w.code == "HP825"]  # run here: it may download
    spec.write_text(HOOKS_SPEC + "slurm { nodes = 1, time = 00:30:00 }\n")
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP825"]
    assert w.message == ("the getter downloads its data (`download=True`, data.py:7), and the study runs on "
                         "compute nodes, which usually have no internet")
    assert w.line == 2 and "`hpoc data fetch NAME --root DIR`" in w.help


def test_loader_workers_are_said_alike_at_check_time_and_as_the_trial_runs(tmp_path: Path) -> None:
    """Two copies of the wording and threshold (hpoc check's HP804, the trial's line) had
    drifted: the same 3 workers in trials of 2 CPUs had two different fixes in two orders."""
    from hpoc.runtime.loaders import message

    (tmp_path / "trainer.py").write_text(own_trainer(body="\n    def setup(self):\n        self.create_dataloaders("
                                                          "self.train_data, num_workers=3)\n"))
    spec = tmp_path / "study.hpo"
    spec.write_text('study "w"\npipeline { trainer = trainer:T }\nresources { cpus_per_worker = 2 }\n')
    (w,) = [w for w in compile_path(spec).warnings if w.code == "HP804"]
    said = message("the train DataLoader", 3, 2)
    consequence = w.message.partition("`cpus_per_worker = 2`: ")[2]
    assert consequence and said.endswith(f"cpus_per_worker = 2: {consequence}; {w.help}"), (w.message, w.help, said)
