"""Valid studies whose trainers read their config the ways users write them: no warning
that a searched parameter is never read (HP816), nor that `val_accuracy` is never
reported (HP801). A false warning on a valid study teaches users to ignore warnings."""

from __future__ import annotations

from hpo_util import diagnostics

SPEC = ('study "t"\npipeline { trainer = t:T%s }\nspace {\n  hidden = choice(8, 16)\n'
        '  act = choice(relu, tanh)\n%s  epochs = 2\n}\n%s')


def _codes(tmp_path, trainer: str, args: str = "", space: str = "", more: str = "", code: str = "HP816") -> list:
    (tmp_path / "t.py").write_text(trainer, encoding="utf-8")
    return [d for d in diagnostics(SPEC % (args, space, more), str(tmp_path)) if d.code == code]


def test_a_hook_s_config_of_another_name_handed_on_whole_is_read(tmp_path) -> None:
    """`def create_model(self, cfg): return build(cfg)`: hpoc passes the trial config to the
    hook whatever its parameter's name, and `build` (another module's) reads every key; both
    searched parameters were warned as never read."""
    for hook in ("create_model(self, cfg):\n        return build(cfg)",
                 "create_model(self, hp):\n        return Net(**hp)",
                 "create_model_loss_optimizer(self, params):\n        return build(params), None, None",
                 "create_model(self, config):\n        return None\n\n"
                 "    def create_optimizer(self, model, cfg):\n        return opt(model, cfg)"):
        trainer = f"import hpoc\nfrom models import build, Net, opt\n\nclass T(hpoc.Trainer):\n    def {hook}\n"
        assert _codes(tmp_path, trainer) == [], hook
    # a hook's other argument is not the config: `model` handed on reads no key
    trainer = ("import hpoc\nfrom models import build\n\nclass T(hpoc.Trainer):\n"
               "    def create_model(self, config):\n        return build(config['hidden'])\n\n"
               "    def create_optimizer(self, model, config):\n        return wrap(model)\n")
    found = [d.message.split(":")[0] for d in _codes(tmp_path, trainer)]
    assert found == ["the trainer never reads the searched `act`"]


def test_a_trainer_handed_to_a_helper_is_read_there(tmp_path) -> None:
    """`return build(self)`, where `build` (another module) reads `trainer.config["act"]`:
    the helper has the whole trial config."""
    trainer = ("import hpoc\nfrom models import build\n\nclass T(hpoc.Trainer):\n"
               "    def create_model(self, config):\n        return build(self)\n")
    assert _codes(tmp_path, trainer) == []
    # or kept from `__init__`, to read the config once the trial has one
    trainer = ("import hpoc\nfrom models import Builder\n\nclass T(hpoc.Trainer):\n"
               "    def __init__(self, **args):\n        super().__init__(**args)\n"
               "        self.builder = Builder(trainer=self)\n\n"
               "    def create_model(self, config):\n        return self.builder.model()\n")
    assert _codes(tmp_path, trainer) == []
    # `super(T, self)`, `isinstance(self, ...)`, `nn.Module.__init__(self)` hand nothing on
    trainer = ("import hpoc\n\nclass Net:\n    def __init__(self):\n        nn.Module.__init__(self)\n\n"
               "class T(hpoc.Trainer):\n    def create_model(self, config):\n"
               "        assert isinstance(self, T)\n        return make(config['hidden'])\n")
    assert len(_codes(tmp_path, trainer)) == 1


def test_a_parameter_that_only_repeats_runs_is_not_called_unread(tmp_path) -> None:
    """`rep = grid(1, 2, 3)` or `seed = grid(...)`, which no trainer reads, runs each
    configuration three times, each trial with its own seed: HP816 called it a value nothing
    reads (and told a grid `seed` to move to `training`, which takes one number)."""
    trainer = ("import hpoc\n\nclass T(hpoc.Trainer):\n    def create_model(self, config):\n"
               "        return make(config['hidden'], config['act'])\n")
    for space in ("  rep = grid(1, 2, 3)\n", "  seed = grid(1, 2, 3)\n", "  run_id = grid(0, 1)\n",
                  "  seed = randint(0, 1000)\n", "  replicate = choice(1, 2)\n"):
        assert _codes(tmp_path, trainer, space=space) == [], space
    # another grid nothing reads is still told, with the grid's own way to repeat
    (d,) = _codes(tmp_path, trainer, space="  width = grid(8, 16)\n")
    assert d.message.startswith("the trainer never reads the searched `width`")
    assert d.help == ('read it in the trainer (`config["width"]`), or remove it (to run each configuration '
                      'several times, `trials { num_samples = N }` repeats the grid)')
    # a constant seed in the space is still sent to `training`
    (d,) = _codes(tmp_path, trainer, space="  seed = 3\n")
    assert d.help == "move it: `training { seed = ... }`"


def test_val_accuracy_of_a_trainer_whose_task_is_not_regression_at_runtime_is_not_warned(tmp_path) -> None:
    """HP801 read `task = "regression"` off the class or the spec's argument alone: a trainer
    that sets `self.task` itself (a regression trainer with a classification mode), one whose
    own `__init__` keeps the `task` argument, or one whose loop of its own reports what a
    helper returns, was told `val_accuracy` is never reported."""
    head = "import hpoc\nfrom helpers import evaluate\n\nclass T(hpoc.Trainer):\n"
    model = "    def create_model(self, config):\n        return make(config['hidden'], config['act'])\n"
    objective = "objective maximize val_accuracy\n"
    cases = {
        '(mode = "classify")': '    task = "regression"\n\n    def __init__(self, mode="regression", **kw):\n'
                               '        super().__init__(**kw)\n'
                               '        self.task = "classification" if mode == "classify" else "regression"\n\n',
        '(task = "regression")': '    def __init__(self, task="classification", **kw):\n'
                                 '        super().__init__(**kw)\n        self.target_kind = task\n\n',
        "": '    task = "regression"\n\n    def train(self):\n        self.setup()\n'
            '        for epoch in range(self.epochs):\n            self.train_epoch(epoch)\n'
            '            self.report(evaluate(self), epoch=epoch)\n\n',
    }
    for args, body in cases.items():
        found = _codes(tmp_path, head + body + model, args, more=objective, code="HP801")
        assert [d for d in found if "val_accuracy" in d.message] == [], args
    # an `__init__` that hands `task` on to hpoc.Trainer is still a regression trainer
    body = ('    def __init__(self, task="classification", **kw):\n        super().__init__(task=task, **kw)\n\n')
    (d,) = _codes(tmp_path, head + body + model, '(task = "regression")', more=objective, code="HP801")
    assert d.message.startswith("metric `val_accuracy` is not reported for a regression trainer")


def test_a_trainer_argument_searched_in_space_is_unread(tmp_path) -> None:
    """`grad_accumulation_steps = choice(1, 2)` in `space`: hpoc.Trainer reads it (and `task`)
    as the trainer's argument only, so every trial trained alike; HP816 took them for values
    hpoc's loop reads from the trial config, and said nothing."""
    trainer = ("import hpoc\n\nclass T(hpoc.Trainer):\n    def create_model(self, config):\n"
               "        return make(config['hidden'], config['act'])\n")
    (d,) = _codes(tmp_path, trainer, space="  grad_accumulation_steps = choice(1, 2)\n")
    assert d.message.startswith("the trainer never reads the searched `grad_accumulation_steps`")
    assert d.help == ("hpoc.Trainer reads `grad_accumulation_steps` as the trainer's argument only, one value "
                      "for every trial: `trainer = t:T(grad_accumulation_steps = ...)`")
    # what the loop does read from the trial config is not told
    assert _codes(tmp_path, trainer, space="  batch_size = choice(16, 32)\n  lr = loguniform(1e-4, 1e-2)\n") == []


def test_a_helper_given_a_group_of_the_config_reads_that_group(tmp_path) -> None:
    """`build_optimizer(model.parameters(), config["optimizer"])`, whose `config["lr"]` reads
    the group: HP811 said the trial config lacks `lr` (a KeyError in every trial) and told the
    user to read `config["optimizer"]["lr"]`, which the helper's call already does."""
    trainer = ("import hpoc\n\ndef build_optimizer(params, config):\n"
               "    return sgd(params, lr=config['lr'], momentum=config['momentum'])\n\n"
               "class T(hpoc.Trainer):\n    def create_model(self, config):\n"
               "        return make(config['hidden'], config['act'])\n\n"
               "    def create_optimizer(self, model, config):\n"
               "        return build_optimizer(model.parameters(), config['optimizer'])\n")
    space = "  optimizer { lr = loguniform(1e-4, 1e-2), momentum = uniform(0.5, 0.9) }\n"
    assert _codes(tmp_path, trainer, space=space, code="HP811") == []
    # a helper handed the whole config still reads the trial's keys
    (d,) = _codes(tmp_path, trainer.replace("config['optimizer'])", "config)"), space=space, code="HP811")[:1]
    assert d.help == '`space` sets `optimizer.lr`, which a trial gets nested: read `config["optimizer"]["lr"]`'


def test_the_keys_a_trainer_reads_are_read_once_for_all_its_unread_parameters(tmp_path, monkeypatch) -> None:
    """Each searched parameter the trainer never reads had the module's config reads walked
    again for its help: a space of many such parameters walked a big trainer as many times."""
    from hpoc.compiler import rules

    calls = []
    real = rules.config_keys_read
    monkeypatch.setattr(rules, "config_keys_read", lambda *a: calls.append(a) or real(*a))
    trainer = ("import hpoc\n\nclass T(hpoc.Trainer):\n"
               "    def create_model(self, config):\n        return config['width']\n")
    space = "".join(f"  extra{i} = choice(1, 2)\n" for i in range(5))
    found = _codes(tmp_path, trainer, space=space)
    assert len(found) == 7  # hidden, act and the five extras: each warned
    assert len(calls) <= 2, calls  # HP811's config-keys check and HP816's help: once each
