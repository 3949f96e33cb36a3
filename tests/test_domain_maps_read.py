"""HP826 for a `space` map of a domain's bounds that is a constant on purpose: `clip: {min:
-1, max: 1}` handed to a trainer that reads `config["clip"]["min"]` was told it "has a
domain's arguments but no `type`" (YAML) or to "write `clip = uniform(-1, 1)`" (.hpo). A
trainer that reads the map's keys, or spreads it, takes it as data: nothing is said. Where
nothing shows that, the warning still comes, worded so a constant meant is not a mistake."""

from __future__ import annotations

from pathlib import Path

from hpo_util import diagnostics, own_trainer
from hpoc.compiler import compile_path
from yaml_configs import config, seed, write

# A trainer that clamps its outputs to the space's `clip`, read as a map.
BY_KEY = own_trainer(body="    def train_step(self, batch):\n"
                          "        lo, hi = self.config['clip']['min'], self.config['clip'].get('max')\n"
                          "        return self.model(batch).clamp(lo, hi).sum()\n")
SPREAD = own_trainer(body="    def train_step(self, batch):\n"
                          "        return self.model(batch).clamp(**self.config['clip']).sum()\n")
IGNORES = own_trainer(body="    def train_step(self, batch):\n        return self.model(batch).sum()\n")


def hpo(tmp_path: Path, trainer: str, space: str = "clip = { min = -1, max = 1 }") -> list:
    (tmp_path / "trainer.py").write_text(trainer)
    spec = f'study "t"\npipeline {{ trainer = trainer:T }}\nspace {{ {space} }}\nobjective minimize val_loss\n'
    return [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP826"]


def test_a_map_the_trainer_reads_by_its_keys_is_not_warned_in_a_spec(tmp_path: Path) -> None:
    assert hpo(tmp_path, BY_KEY) == []
    assert hpo(tmp_path, SPREAD) == []
    # a typed domain map the trainer reads as a map is its data too
    assert hpo(tmp_path, BY_KEY, 'clip = { type = "uniform", min = -1, max = 1 }') == []


def test_a_map_nothing_reads_as_a_map_is_warned_without_calling_a_constant_a_mistake(tmp_path: Path) -> None:
    (w,) = hpo(tmp_path, IGNORES)
    assert w.message == "`clip` is a constant map: every trial gets it as written; a map in `space` is not searched"
    assert w.help == ("to search it, write `clip = uniform(-1, 1)` (or `loguniform`, `randint`, ...); "
                      "if the trainer reads it as a map, it is right as written")
    # a map whose `type` names a domain was meant to be searched: said as before
    (w,) = hpo(tmp_path, IGNORES, 'lr = { type = "loguniform", min = 1e-4, max = 1e-1 }')
    assert w.message == "`lr` is a map, not a search domain: it is not searched, every trial gets the map as written"
    assert w.help == "write `lr = loguniform(0.0001, 0.1)`"
    # a trainer that names `clip` but reads none of its keys: no sign it takes the map
    (w,) = hpo(tmp_path, IGNORES.replace(".sum()", ".sum() * len(self.config['clip'])"))
    assert w.message.startswith("`clip` is a constant map")


def yaml_hp826(tmp_path: Path, trainer_body: str) -> list:
    doc = seed()
    config(doc)["train_loop_config"]["clip"] = {"min": -1, "max": 1}
    write(tmp_path, doc)
    text = (tmp_path / "trainer.py").read_text()
    (tmp_path / "trainer.py").write_text(text + trainer_body)
    return [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP826"]


def test_a_yaml_mapping_the_trainer_reads_by_its_keys_is_not_warned(tmp_path: Path) -> None:
    reads = ("\n\ndef clipped(trainer, x):\n"
             "    bounds = trainer.training_config['clip']\n    return x.clamp(bounds['min'], bounds['max'])\n")
    assert yaml_hp826(tmp_path, reads) == []


def test_a_yaml_mapping_nothing_reads_is_warned_without_calling_a_constant_a_mistake(tmp_path: Path) -> None:
    (w,) = yaml_hp826(tmp_path, "")
    assert w.message == ("`clip` is a constant mapping: every trial gets it as written; without a `type` it is "
                         "not searched")
    assert w.help == ("to search it, add `type: uniform` (or `loguniform`, `randint`, ...); "
                      "if the trainer reads it as a mapping, it is right as written")


def test_a_key_read_off_another_map_does_not_hide_a_domain_written_as_data(tmp_path: Path) -> None:
    # the trainer reads `lr` as the number it expects, and `["max"]`/`.get("type")` of other
    # dicts: nothing reads `lr`'s keys, so the map every trial gets is still said
    reads_lr = own_trainer(body="    def create_optimizer(self, model, config):\n"
                                "        top = self.stats['max'] + self.sched.get('type', 0)\n"
                                "        return SGD(model.parameters(), lr=config['lr'] * top)\n")
    (w,) = hpo(tmp_path, reads_lr, "lr = { min = 1e-4, max = 1e-1 }")
    assert w.message.startswith("`lr` is a constant map")
    (w,) = hpo(tmp_path, reads_lr, 'lr = { type = "loguniform", min = 1e-4, max = 1e-1 }')
    assert w.message.startswith("`lr` is a map, not a search domain")
    # `clip` read by its keys is data; `lr` beside it is not, though `["min"]` is read
    (w,) = hpo(tmp_path, BY_KEY.replace(".sum()", ".sum() * self.config['lr']"),
               "clip = { min = -1, max = 1 }\n lr = { min = 1e-4, max = 1e-1 }")
    assert w.message.startswith("`lr` is a constant map")
    # a spread of another mapping that holds `config["lr"]` is not a spread of `lr`
    spreads = own_trainer(body="    def create_optimizer(self, model, config):\n"
                               "        return SGD(model.parameters(), **{'lr': config['lr']})\n")
    (w,) = hpo(tmp_path, spreads, "lr = { min = 1e-4, max = 1e-1 }")
    assert w.message.startswith("`lr` is a constant map")


def test_a_map_read_through_a_name_or_walked_is_data(tmp_path: Path) -> None:
    alias = own_trainer(body="    def train_step(self, batch):\n        clip = self.config.get('clip')\n"
                             "        return self.model(batch).clamp(clip['min'], clip['max']).sum()\n")
    assert hpo(tmp_path, alias) == []
    walked = own_trainer(body="    def train_step(self, batch):\n"
                              "        bounds = {k: v for k, v in self.config['clip'].items()}\n"
                              "        return self.model(batch).clamp(**bounds).sum()\n")
    assert hpo(tmp_path, walked) == []
    copied = alias.replace("self.config.get('clip')", "dict(self.config['clip'])")
    assert hpo(tmp_path, copied) == []


def test_a_map_handed_to_a_helper_that_reads_its_keys_is_data(tmp_path: Path) -> None:
    helper = own_trainer(body="    def train_step(self, batch):\n"
                              "        return self.clamped(self.model(batch), self.config['clip']).sum()\n\n"
                              "    def clamped(self, x, bounds):\n        return x.clamp(bounds['min'], bounds['max'])\n")
    assert hpo(tmp_path, helper) == []
    by_keyword = helper.replace("self.config['clip'])", "bounds=self.config['clip'])")
    assert hpo(tmp_path, by_keyword) == []
    # a helper handed something else reads no key of `clip`
    (w,) = hpo(tmp_path, helper.replace("self.config['clip'])", "self.stats)"))
    assert w.message.startswith("`clip` is a constant map")
