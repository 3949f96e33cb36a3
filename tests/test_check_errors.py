"""Semantic checks: one test per kind of error, asserting message and line:col."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np

import pytest

from hpo_util import BASE, diagnostics, errors, installed, one_error, own_trainer, plan_of, warnings, where
from hpoc.compiler import compile_source
from hpoc.errors import SpecCheckError, SpecError
from hpoc.plan import dumps
from hpoc.plan.validate import validate

# ------------------------------------------------------------------ names and keys


def test_unknown_section_suggests_the_closest() -> None:
    d = one_error(BASE + "schedular asha {}\n")
    assert (d.code, where(d)) == ("HP201", (3, 1))
    assert d.message == "unknown section `schedular`"
    assert d.help == "did you mean `scheduler`?"


def test_a_misspelt_or_misplaced_required_section_is_reported_once_where_it_is_written() -> None:
    """`pipline { ... }`, `Study "x"` or `pipeline = { ... }` were also told at 1:1 that the
    study has no pipeline (no name), listed first: the error a user would act on came second."""
    d = one_error('study "t"\npipline { trainer = t:T }\n')
    assert (d.code, where(d), d.help) == ("HP201", (2, 1), "did you mean `pipeline`?")
    d = one_error('Study "t"\npipeline { trainer = t:T }\n')
    assert (d.code, where(d), d.help) == ("HP201", (1, 1), "did you mean `study`?")
    d = one_error('study = "t"\npipeline { trainer = t:T }\n')
    assert (d.code, where(d), d.help) == ("HP206", (1, 1), 'write `study "t"`')
    d = one_error('study "t"\npipeline = { trainer = t:T }\n')
    assert (d.code, where(d)) == ("HP206", (2, 1))
    assert d.help == "write `pipeline { ... }`: a section takes no `=`"


def test_a_section_written_as_a_setting_says_how_to_write_it() -> None:
    errs = errors(BASE + "objective minimize val_loss\ntrials = { num_samples = 4 }\n"
                  "search = optuna\nscheduler = \"asha\"\nspace { x = uniform(0, 1) }\n")
    assert [(e.code, where(e)[0], e.help) for e in errs] == [
        ("HP206", 4, "write `trials { ... }`: a section takes no `=`"),
        ("HP206", 5, "write `search optuna`"),
        ("HP206", 6, "write `scheduler asha`"),
    ]
    errs = errors(BASE + "logger = [mlflow, tensorboard]\nsearch = { seed = 0 }\n")
    assert [e.help for e in errs] == ["one `logger` per line: `logger mlflow`, `logger tensorboard`",
                                      "write `search <algorithm> { ... }`: a section takes no `=`"]


def test_two_objective_lines_are_told_how_to_write_several_metrics() -> None:
    """Two `objective` lines (a multi-objective study written from the one-line form) were
    told "merge them into one", which does not say that the block form exists."""
    d = one_error(BASE + "objective minimize val_loss\nobjective maximize \"val/acc\"\n")
    assert (d.code, where(d), d.message) == ("HP202", (4, 1), "section `objective` appears twice")
    assert d.help == 'for several metrics write one block: `objective { minimize val_loss; maximize "val/acc" }`'


def test_several_metrics_on_the_objective_line_are_shown_the_block() -> None:
    """`objective minimize val_loss, maximize val_accuracy` read `maximize ...` as a section
    and answered with the list of every section."""
    d = one_error(BASE + "objective minimize val_loss, maximize val_accuracy\n")
    assert (d.code, where(d), d.message) == ("HP201", (3, 30), "unknown section `maximize`")
    assert d.help == "for several metrics write one block: `objective { minimize val_loss; maximize val_accuracy }`"


def test_a_block_naming_its_kind_inside_is_shown_the_label_form() -> None:
    """`search { algorithm = optuna }` (Ray's and YAML's way) was told to write
    `search <algorithm> { ... }`, and then that `search random` takes no `algorithm`."""
    obj = "objective minimize val_loss\nspace { x = uniform(0, 1) }\n"
    for block, help in (("search { algorithm = optuna, seed = 0 }", "write `search optuna { ... }`"),
                        ("scheduler { name = asha, max_t = 4 }", "write `scheduler asha { ... }`"),
                        ('logger { kind = "mlflow" }', "write `logger mlflow { ... }`")):
        d = one_error(BASE + obj + block + "\n")
        assert (d.code, where(d), d.help) == ("HP205", (5, 1), help), block


def test_a_logger_kind_written_as_a_section_is_shown_as_a_logger() -> None:
    """`logger mlflow, tensorboard` above another section reads `tensorboard trials { ... }`
    as a section; it was told the list of every section."""
    errs = errors(BASE + "logger mlflow, tensorboard\ntrials { num_samples = 2 }\n")
    assert [(e.code, where(e), e.help) for e in errs] == [
        ("HP201", (3, 16), "write `logger tensorboard` on a line of its own")]


def test_unknown_key_suggests_the_closest() -> None:
    d = one_error(BASE + "trials {\n  num_samples = 2\n  max_concurent = 3\n}\n")
    assert (d.code, where(d)) == ("HP201", (5, 3))
    assert d.message == "unknown key `max_concurent` in `trials`"
    assert d.help == "did you mean `max_concurrent`?"


def test_another_algorithms_option_is_named_as_such_not_sent_to_a_section() -> None:
    """`search nevergrad { seed = 1 }` was told "`seed` belongs in `training`", whose seed
    makes trials deterministic and seeds no search."""
    obj = "objective minimize val_loss\nspace { x = uniform(0, 1) }\n"
    d = one_error(BASE + obj + "search nevergrad { seed = 1 }\n")
    assert (d.code, where(d), d.message) == ("HP201", (5, 20), "unknown key `seed` in `search nevergrad`")
    assert d.help == ("`search nevergrad` takes no `seed`; it is an option of `search random`, `search optuna`, "
                      "`search hyperopt`, `search bayesopt`, `search hebo` or `search bohb`")
    d = one_error(BASE + obj + "scheduler hyperband { grace_period = 1 }\n")
    assert d.help == "`scheduler hyperband` takes no `grace_period`; it is an option of `scheduler asha` or `scheduler median`"


def test_a_misplaced_seed_is_sent_to_both_sections_that_take_one() -> None:
    """`trials { seed = 3 }` was sent to `training` only, whose seed makes each trial's
    training repeatable: a user after the same configs run after run needs `search`'s."""
    both = "`seed` belongs in `search` (which configs are drawn) or `training` (each trial's training)"
    d = one_error(BASE + "trials { num_samples = 2, seed = 3 }\n")
    assert (d.code, where(d), d.help) == ("HP201", (3, 27), both)
    d = one_error(BASE + "objective minimize val_loss\nscheduler asha { seed = 0 }\n")
    assert (d.code, d.help) == ("HP201", both)
    d = one_error(BASE + "seed = 0\n")
    assert (d.code, d.help) == ("HP206", both)


def test_hints_prefer_a_known_synonym_or_the_word_begun() -> None:
    obj = "objective minimize val_loss\n"
    d = one_error(BASE + obj + "scheduler asha { max_t = 10, grace = 2 }\n")
    assert d.help == "did you mean `grace_period`?"  # not `brackets`, closer by spelling
    assert one_error(BASE + 'slurm { modules = ["x"] }\n').help == "did you mean `setup`?"
    assert one_error(BASE + "space { l = normal(0, 1) }\n").help == "did you mean `randn`?"
    (w,) = warnings(BASE + "objective minimize val_los\n")
    assert (w.code, w.help) == ("HP801", "did you mean `val_loss`?")
    d = one_error(BASE + obj + "space { bs = uniform(1, 2) }\nscheduler pb2 { hyperparam_bounds { bs = [1] } }\n")
    assert d.message == "bounds of `bs` must be `[lower, upper]`, not a list of 1 value"


def test_a_duration_may_be_written_as_a_walltime_meaning_what_slurm_time_means() -> None:
    """`slurm.time` took `2h` while `time_budget` refused `02:00:00`: either form, anywhere."""
    plan = plan_of(BASE + "trials { time_budget = 02:00:00, time_limit = 1-12:00:00 }\n"
                   "resume { grace = 05:00 }\nslurm { time = 2h }\n")  # fmt: skip
    assert (plan["trials"]["time_budget_s"], plan["trials"]["time_limit_s"]) == (7200, 129600)
    assert plan["resume"]["grace_s"] == 300  # MM:SS, as SLURM reads it
    d = one_error(BASE + "trials { time_limit = 00:90:00 }\n")
    assert (d.code, where(d), d.message, d.help) == (
        "HP204", (3, 23), "`time_limit` has an invalid walltime `00:90:00`: minutes must be below 60 (got 90)",
        "write `01:30:00` or `1h30m` for the same time")  # fmt: skip
    d = one_error(BASE + "trials { time_budget = 400-00:00:00 }\n")
    assert d.message == "`time_budget` must be at most 365 days (got 400-00:00:00)"
    d = one_error(BASE + "resume { grace = 1-00:00 }\n")
    assert (d.code, d.message) == ("HP204", "`grace` must be whole seconds from 0 to 65535 "
                                             "(the limit of SLURM's --signal), got 1-00:00")  # fmt: skip


def test_a_quoted_duration_or_walltime_gets_the_value_to_write() -> None:
    d = one_error(BASE + 'trials { time_limit = "30m" }\n')
    assert (d.code, where(d), d.help) == ("HP203", (3, 23), "remove the quotes: 30m")
    assert one_error(BASE + 'trials { time_limit = "02:00:00" }\n').help == "remove the quotes: 02:00:00"


def test_a_quoted_or_capitalised_boolean_gets_the_word_to_write() -> None:
    d = one_error(BASE + 'training { compile = "true" }\n')
    assert (d.code, where(d), d.help) == ("HP203", (3, 22), "write `true`, without quotes")
    assert one_error(BASE + 'training { data_on_device = "False" }\n').help == "write `false`, without quotes"
    assert one_error(BASE + "training { data_on_device = True }\n").help == "write `true`"


def test_epochs_and_batch_size_are_whole_numbers_from_one() -> None:
    """`epochs = 2.5` trained 2 epochs silently; `batch_size = 0` failed every trial in Ray."""
    cases = {
        "epochs = 2.5": ("HP203", "`epochs` must be a whole number of at least 1, not 2.5"),
        "batch_size = 0": ("HP203", "`batch_size` must be a whole number of at least 1, not 0"),
        "epochs = true": ("HP203", "`epochs` must be a whole number of at least 1, not true"),
        "batch_size = choice(32, 0.5)": ("HP203", "`batch_size` must take whole numbers of at least 1, not 0.5"),
        "epochs = uniform(1, 5)": ("HP203", "`epochs = uniform(...)` draws fractional values"),
        "batch_size = quniform(16, 64, 16)": ("HP203", "`batch_size = quniform(...)` draws fractional values"),
        "batch_size = qrandint(0, 64, 16)": ("HP302", "`batch_size` may be drawn as 0"),
    }
    for setting, (code, message) in cases.items():
        d = one_error(BASE + f"space {{ {setting} }}\nobjective minimize val_loss\n")
        assert (d.code, d.message) == (code, message), setting
    for fine in ("epochs = 3", "epochs = choice(2, 4)", "batch_size = qrandint(16, 64, 16)",
                 "batch_size = grid(8, 16)", "data.batch_size = 0.5"):  # a group's: not the loop's
        assert errors(BASE + f"space {{ {fine} }}\nobjective minimize val_loss\n") == [], fine


def test_an_epochs_value_that_is_an_error_brings_no_scheduler_warning() -> None:
    """`epochs = 0` is one mistake; ASHA's "grace_period (1) is not below epochs (0)" was a second."""
    for epochs in ("0", "-2", "choice(0, 4)"):
        src = BASE + f"space {{ epochs = {epochs} }}\nobjective minimize val_loss\ntrials {{ num_samples = 4 }}\n"
        assert [d.code for d in diagnostics(src + "scheduler asha { max_t = 3 }\n")] == ["HP203"], epochs


def test_a_whole_count_written_as_a_float_is_the_same_in_the_spec_and_the_trainer() -> None:
    """`epochs = 10.0` was refused by `hpoc check` while the trainer ran 10 epochs with it,
    and a trainer argument (`trainer:T(batch_size = 0)`) was not checked at all: one rule
    for both, and the plan holds the count as an integer (`range(config["epochs"])`)."""
    obj = "objective minimize val_loss\n"
    plan = plan_of(BASE + "space { epochs = 10.0, batch_size = choice(16.0, 32) }\n" + obj)
    assert plan["space"]["constants"]["epochs"] == 10 and isinstance(plan["space"]["constants"]["epochs"], int)
    assert plan["space"]["params"][0]["args"]["categories"] == [16, 32]
    assert all(isinstance(v, int) for v in plan["space"]["params"][0]["args"]["categories"])
    trainer = BASE.replace("trainer:T", "trainer:T(epochs = 3.0, batch_size = BS)")
    assert trainer != BASE
    plan = plan_of(trainer.replace("BS", "64") + obj)
    assert plan["pipeline"]["trainer"]["args"] == {"epochs": 3, "batch_size": 64}
    assert isinstance(plan["pipeline"]["trainer"]["args"]["epochs"], int)
    d = one_error(trainer.replace("BS", "0") + obj)
    assert (d.code, d.message) == ("HP203", "argument `batch_size` of `trainer` must be a whole number "
                                            "of at least 1, not 0")
    # the space's value is the one the loop reads: the argument is not
    assert errors(trainer.replace("BS", "0") + "space { batch_size = 32 }\n" + obj) == []


def test_an_objective_whose_name_says_the_other_direction_is_a_warning() -> None:
    """`maximize val_loss` searches for the worst models and ranks them first, silently."""
    (w,) = warnings(BASE + "objective maximize val_loss\n")
    assert (w.code, where(w)) == ("HP809", (3, 20))
    assert w.message == ("`val_loss` is maximised, but its name says lower is better: the study "
                         "would search for the worst models and rank them first")
    assert w.help.startswith("write `minimize val_loss`")
    (w,) = warnings(BASE + "objective { minimize val_accuracy, minimize val_loss }\n")
    assert (w.code, w.message.split(" is ")[0]) == ("HP809", "`val_accuracy`")
    for goal in ("minimize top_1_accuracy", 'minimize "acc@1"'):  # a 1 that negates nothing
        assert "HP809" in [w.code for w in warnings(BASE + f"objective {goal}\n")], goal
    # names that say nothing, or say it both ways, or negated: no opinion
    for goal in ("maximize val_loss_neg", "minimize my_metric", "maximize val_accuracy",
                 "minimize val_loss", "maximize reward", "maximize acc_minus_loss",
                 'minimize "1-accuracy"'):
        assert [w.code for w in warnings(BASE + f"objective {goal}\n")
                if w.code == "HP809"] == [], goal


def test_early_stopping_measured_against_the_epochs_a_trial_runs() -> None:
    obj = "objective minimize val_loss\ntrials { num_samples = 8 }\n"
    (w,) = warnings(BASE + "space { lr = uniform(0, 1), epochs = 5 }\n" + obj
                    + "scheduler asha { max_t = 100, grace_period = 10 }\n")
    assert (w.code, where(w), w.message) == (
        "HP805", (6, 31), "`scheduler asha` stops no trial early: `grace_period` (10) is not below `epochs` (5)")
    (w,) = warnings(BASE + "space { lr = uniform(0, 1), epochs = choice(5, 20) }\n" + obj
                    + "scheduler asha { max_t = 10, grace_period = 2 }\n")
    assert (w.code, w.message, w.help) == (
        "HP805", "trials stop at `max_t` = 10, before their 20 `epochs`",
        "set `max_t = 20` (the longest a trial runs, in epochs), or `stop_last_trials = false`")
    (w,) = warnings(BASE + "space { epochs = 1 }\n" + obj + "scheduler median\n")
    assert w.help == "one epoch leaves nothing to stop early: raise `epochs`, or use `scheduler fifo`"
    # fitting horizons, or epochs the space does not say: nothing to warn about
    assert not warnings(BASE + "space { epochs = 8 }\n" + obj + "scheduler asha { max_t = 8, grace_period = 2 }\n")
    assert not warnings(BASE + "space { lr = uniform(0, 1) }\n" + obj + "scheduler asha { grace_period = 50 }\n")
    # measured in seconds, or letting the survivors run on: no relation to epochs
    assert not warnings(BASE + "space { epochs = 20 }\n" + obj
                        + "scheduler asha { time_attr = time_total_s, max_t = 7200, grace_period = 600 }\n")
    assert not warnings(BASE + "space { epochs = 100 }\n" + obj
                        + "scheduler asha { max_t = 27, grace_period = 1, stop_last_trials = false }\n")


def test_early_stopping_measured_against_the_trainers_epochs_argument() -> None:
    """`trainer:T(epochs = 20)` is what the loop trains when the space has no `epochs`, and
    what PBT's last epoch is taken from at run time: `max_t = 10` cut every trial short unsaid."""
    spec = ('study "t"\npipeline { trainer = trainer:T(epochs = 20) }\nspace { lr = uniform(0, 1) }\n'
            "objective minimize val_loss\ntrials { num_samples = 8 }\nscheduler asha { max_t = 10, grace_period = 2 }\n")
    (w,) = warnings(spec)
    assert (w.code, where(w), w.message) == ("HP805", (6, 18), "trials stop at `max_t` = 10, before their 20 `epochs`")
    assert not warnings(spec.replace("space { lr", "space { epochs = 10, lr"))  # the space's count wins


def _sched(space: str, trials: str, scheduler: str, extra: str = "") -> str:
    """A study whose line 3 is `space`, 4 the objective, 5 `trials`, 6 the scheduler."""
    return (BASE + f"space {{ {space} }}\nobjective maximize val_accuracy\ntrials {{ {trials} }}\n"
            + scheduler + "\n" + extra)


def test_schedulers_that_compare_no_trial_are_warned_about() -> None:
    # Ray's schedulers compare trials: one trial leaves nothing to compare (per shard)
    (w,) = warnings(_sched("epochs = 10", "num_samples = 1", "scheduler asha"))
    assert (w.code, where(w), w.message, w.help) == (
        "HP805", (5, 10), "`scheduler asha` stops no trial early: it compares trials, and the study runs one",
        "raise `trials.num_samples`, or use `scheduler fifo`")
    (w,) = warnings(_sched("epochs = 10", "num_samples = 4", "scheduler pbt", 'slurm { array { shards = 4 } }\n'))
    assert w.message == "`scheduler pbt` exploits nothing: it compares trials, and the study runs one per shard"
    # said once: what else would keep it from acting (a single rung, perturbations between
    # checkpoints) is no second warning
    (w,) = warnings(_sched("lr = uniform(0, 1)", "num_samples = 1", "scheduler asha { max_t = 4, grace_period = 4 }"))
    assert w.message.endswith("it compares trials, and the study runs one")
    for sched in ("asha { max_t = 10, grace_period = 6 }", "median { grace_period = 6 }"):  # grace past epochs
        (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 5", "num_samples = 1", "scheduler " + sched))
        assert w.message.endswith("it compares trials, and the study runs one"), sched
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 10", "num_samples = 1", "scheduler pbt { perturbation_interval = 3 }",
                           "checkpoint { every = 2 }\n"))
    assert w.message.endswith("it compares trials, and the study runs one")
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 10", "num_samples = 1", "scheduler pbt",  # keep: no donor
                           "checkpoint { every = 1, keep = 2 }\n"))
    assert w.message.endswith("it compares trials, and the study runs one")
    # a PBT that never perturbs: that is the warning, not also its interval between checkpoints
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 6", "num_samples = 4",
                           "scheduler pbt { perturbation_interval = 3, burn_in_period = 6 }", "checkpoint { every = 2 }\n"))
    assert w.message.startswith("`scheduler pbt` never exploits a trial: `burn_in_period` (6)")
    # MedianStoppingRule needs `min_samples_required` *other* trials past the same point
    (w,) = warnings(_sched("epochs = 10", "num_samples = 3", "scheduler median { min_samples_required = 3 }"))
    assert (w.code, where(w), w.message, w.help) == (
        "HP805", (6, 20), "`scheduler median` stops no trial: it compares a trial with at least "
        "`min_samples_required` (3) others, and 3 trials leave 2",
        "lower `min_samples_required` to 2, or run more than 3 trials")
    assert not warnings(_sched("epochs = 10", "num_samples = 4", "scheduler median"))
    # ASHA compares a trial with those before it at the same rung: two trials are enough,
    # whatever the reduction factor
    assert not warnings(_sched("epochs = 10", "num_samples = 2", "scheduler asha { max_t = 10, reduction_factor = 4 }"))
    # ...but its only rung at max_t is where every trial stops anyway
    (w,) = warnings(_sched("lr = uniform(0, 1)", "num_samples = 8", "scheduler asha { max_t = 4, grace_period = 4 }"))
    assert (where(w), w.message) == (
        (6, 29), "`scheduler asha` stops no trial early: `grace_period` equals `max_t` (4), where every trial ends anyway")
    assert not warnings(_sched("lr = uniform(0, 1)", "num_samples = 8",
                               "scheduler asha { max_t = 4, grace_period = 4, stop_last_trials = false }"))


def test_asha_brackets_whose_rungs_all_fall_at_or_after_the_last_epoch() -> None:
    # Ray's ASHA bracket s has rungs at grace_period * rf ** (k + s) below max_t, and puts a
    # trial in it with weight e ** (its rungs): max_t = 4, rf = 4, 3 brackets have rungs
    # {1, 4}, {4}, {}: the last two (weights e^-1, e^-2 of 1 + e^-1 + e^-2) never stop one.
    (w,) = warnings(_sched("epochs = 4", "num_samples = 12",
                           "scheduler asha { max_t = 4, reduction_factor = 4, brackets = 3 }"))
    assert (w.code, where(w), w.message) == (
        "HP805", (6, 51), "`scheduler asha` stops no trial early in 2 of its 3 brackets: about 33% of the trials")
    assert w.help == "set `brackets = 1`, or raise `max_t` and `epochs`"
    # users count brackets from 1, as `brackets = 3` does: "bracket s ... ** s" meant s from 0
    assert w.notes == ("Ray's ASHA puts each trial in one of its brackets at random; its k-th bracket compares "
                       "trials first after `grace_period` * `reduction_factor` ** (k - 1) epochs (here: 1, 4, 16), "
                       "and trials end at 4",)
    assert not warnings(_sched("epochs = 16", "num_samples = 12",
                               "scheduler asha { max_t = 16, reduction_factor = 4, brackets = 2 }"))
    # the trials' last epoch bounds the rungs too (max_t past it is its own warning: not here)
    (w,) = warnings(_sched("epochs = 16", "num_samples = 12",
                           "scheduler asha { max_t = 16, reduction_factor = 4, brackets = 3, stop_last_trials = false }"))
    assert w.message == "`scheduler asha` stops no trial early in 1 of its 3 brackets: about 9% of the trials"
    assert w.help == "set `brackets = 2`, or raise `epochs`"
    (w,) = warnings(_sched("epochs = 10", "num_samples = 12", "scheduler asha { brackets = 3 }"))  # max_t = 100
    assert (w.message, w.help) == ("`scheduler asha` stops no trial early in 1 of its 3 brackets: about 9% of the "
                                   "trials", "set `brackets = 2`, or raise `epochs`")
def test_hyperband_under_a_max_concurrent_below_its_halving_brackets() -> None:
    # Seen with Ray 2.60 (max_t = 3, rf = 3: trials 1-2 in a bracket that halves none, 3-5 in
    # one that keeps 1 of 3), slots for every running trial: under `max_concurrent = 2` or 3
    # no trial was stopped, with 4, 5 or none two were. The bracket halves the trials it
    # holds once they all reach its milestone: under 3 it held trial 3 alone, as trials 4 and
    # 5 are made only once trial 1 or 2 ends, after 3 epochs.
    sched = "scheduler hyperband { max_t = 3 }"
    for cap in (2, 3):
        (w,) = warnings(_sched("epochs = 3", f"num_samples = 6, max_concurrent = {cap}", sched))
        assert (w.code, where(w), w.message) == (
            "HP805", (5, 27), f"`scheduler hyperband` stops no trial early under `max_concurrent = {cap}`")
        assert w.help == "raise `max_concurrent` to 4 or more, or leave it out, or use `scheduler asha`"
    assert w.notes == ("a bracket compares the trials it holds once all of them reach its milestone, and Tune "
                       "makes more trials only as others end: the first bracket that halves (trials 3 to 5) holds "
                       "1 of its 3 then, and keeps 1",)
    assert not warnings(_sched("epochs = 3", "num_samples = 6, max_concurrent = 4", sched))
    assert not warnings(_sched("epochs = 3", "num_samples = 6", sched))


def test_hyperband_with_too_few_trials_for_a_bracket_that_halves() -> None:
    # Ray's HyperBand fills bracket s = 0 first: its trials all run to max_t. max_t = 10,
    # rf = 3: 3 trials there, then 5 halved after 3 epochs (2 kept): 6 trials stop one.
    (w,) = warnings(_sched("epochs = 10", "num_samples = 5", "scheduler hyperband { max_t = 10 }"))
    assert (w.code, where(w), w.message) == ("HP805", (6, 23), "`scheduler hyperband` stops no trial early with 5 trials")
    assert w.notes == ("Ray's HyperBand fills its brackets in turn: the first takes 3 trials and runs each to "
                       "`max_t` (10) without comparing them",)
    assert w.help == "run at least 6 trials, or use `scheduler asha`"
    assert not warnings(_sched("epochs = 10", "num_samples = 6", "scheduler hyperband { max_t = 10 }"))
    w = warnings(_sched("epochs = 1", "num_samples = 30", "scheduler hyperband { max_t = 1 }"))[-1]
    assert "the first takes 1 trial and runs it to `max_t` (1) without comparing it" in w.notes[0]
    # max_t above the epochs: the default 81 halves first after 27 epochs, then 9
    (w,) = warnings(_sched("epochs = 10", "num_samples = 13", "scheduler hyperband"))
    assert (where(w), w.help) == ((5, 10), "run at least 19 trials, or lower `max_t` to the 10 epochs a trial "
                                           "runs, or use `scheduler asha`")
    assert w.notes[1] == "the next compares trials after 27 epochs, and they train 10"
    # BOHB fills its most aggressive bracket first
    assert not warnings(_sched("lr = uniform(0, 1), epochs = 10", "num_samples = 5", "scheduler bohb { max_t = 10 }",
                               "search bohb\n"))
    # measured in seconds: no relation to epochs, only to the trials (a `max_t` given: its default is epochs')
    assert not warnings(_sched("epochs = 10", "num_samples = 13",
                               "scheduler hyperband { time_attr = time_total_s, max_t = 81 }"))


def test_pausing_schedulers_need_checkpoints_to_resume_from() -> None:
    # HyperBand paused a trial after epoch 2 and it trained epochs 1, 2 again (result.json)
    (w,) = warnings(_sched("epochs = 4", "num_samples = 6", "scheduler hyperband { max_t = 4, reduction_factor = 2 }",
                           "checkpoint { every = 0 }\n"))
    assert (w.code, where(w), w.help) == ("HP805", (7, 14), "set `checkpoint { every = 1 }`")
    assert w.message == ("`scheduler hyperband` pauses trials and resumes them from their latest checkpoint, "
                         "but `checkpoint.every` is 0: a paused trial starts over from its first epoch")
    assert not warnings(_sched("epochs = 4", "num_samples = 6", "scheduler asha { max_t = 4 }",
                               "checkpoint { every = 0 }\n"))  # ASHA only stops trials


def test_population_scheduler_that_never_reaches_a_perturbation() -> None:
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 6", "num_samples = 4", "scheduler pbt { perturbation_interval = 6 }"))
    assert (w.code, where(w), w.message, w.help) == (
        "HP805", (6, 17), "`scheduler pbt` never exploits a trial: `perturbation_interval` (6) is not below `epochs` (6)",
        "lower `perturbation_interval` below 6")
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 6", "num_samples = 4", "scheduler pbt { burn_in_period = 8 }"))
    assert "`burn_in_period` (8)" in w.message
    assert not warnings(_sched("lr = uniform(0, 1), epochs = 6", "num_samples = 4", "scheduler pbt { perturbation_interval = 5 }"))


def test_a_time_attr_nobody_reports(tmp_path) -> None:
    (w,) = warnings(_sched("epochs = 10", "num_samples = 8", "scheduler asha { time_attr = step }"))
    assert (w.code, where(w), w.message) == (
        "HP801", (6, 18), "`time_attr` `step` is not reported by hpoc's default train loop or by Tune")
    assert w.notes[0] == "Ray's `asha` skips every result without it: it would stop no trial"
    (w,) = warnings(_sched("epochs = 10", "num_samples = 8", "scheduler hyperband { max_t = 10, time_attr = time_total }"))
    assert (w.notes[0], w.help) == ("Ray's `hyperband` fails the study at the first result without it",
                                    "did you mean `time_total_s`?")
    (w,) = warnings(_sched("lr = uniform(0, 1), epochs = 10", "num_samples = 8",
                           "scheduler pbt { time_attr = step, require_attrs = false }"))
    assert w.notes[0] == "Ray's `pbt` skips every result without it: it would exploit nothing"
    # Tune's own keys, hpoc's `epoch`, and a key the trainer's module reports
    for attr in ("time_total_s", "epoch", "training_iteration"):
        assert not [w for w in warnings(_sched("epochs = 10", "num_samples = 8", f"scheduler asha {{ time_attr = {attr} }}"))
                    if w.code == "HP801"]
    (tmp_path / "trainer.py").write_text("def f(r):\n    r.report({'step': 1})\n", encoding="utf-8")
    text = _sched("epochs = 10", "num_samples = 8", "scheduler asha { time_attr = step }")
    assert not [d for d in diagnostics(text, str(tmp_path)) if d.severity == "warning"]


def test_a_time_attr_a_loop_of_its_own_does_not_report(tmp_path) -> None:
    """As for the objective's metrics (HP801): a trainer with a loop of its own reports to
    Tune only what it passes to `checkpoint_and_report`, not another dict of its module nor
    hpoc's default loop metrics."""
    (tmp_path / "trainer.py").write_text(
        "from hpoc import Trainer\n\nclass T(Trainer):\n    def train(self):\n        self.log({'step': 1})\n"
        "        self.checkpoint_and_report(1, tuning_metrics={'val_accuracy': 0.5})\n", encoding="utf-8")

    def said(attr):
        text = _sched("epochs = 10", "num_samples = 8", f"scheduler asha {{ time_attr = {attr} }}")
        return [d for d in diagnostics(text, str(tmp_path)) if d.code == "HP801"]

    for attr in ("step", "train_loss"):
        (w,) = said(attr)
        assert (w.code, where(w), w.message) == (
            "HP801", (6, 18), f"`time_attr` `{attr}` is not reported to Tune by the trainer, nor added by Tune")
    assert w.notes == ("Ray's `asha` skips every result without it: it would stop no trial",
                       "Tune adds `training_iteration`, `time_total_s`, `time_this_iter_s`; the trainer's "
                       "loop reports `epoch`, `training_iteration`, `val_accuracy` with `checkpoint_and_report`")
    assert w.help == "add `train_loss` to the metrics the trainer passes to `checkpoint_and_report`"
    for attr in ("epoch", "val_accuracy", "time_total_s"):
        assert not said(attr), attr


def test_a_stop_key_nobody_reports(tmp_path) -> None:
    """`stop = { epochs = 2 }` (hpoc reports `epoch`): Ray skips a criterion no result
    holds, so every trial ran all its epochs and nothing said why."""
    src = BASE + "space { epochs = 3 }\nobjective minimize val_loss\ntrials { stop = { %s } }\n"
    (w,) = warnings(src % "epochs = 2")
    assert (w.code, where(w), w.message, w.help) == (
        "HP801", (5, 19), "`stop` key `epochs` is not reported by hpoc's default train loop or by Tune",
        "did you mean `epoch`?")
    assert w.notes == ("Ray skips a stop criterion that no result holds: it would stop no trial",)
    assert not warnings(src % "training_iteration = 3, epoch = 3, val_accuracy = 0.9, time_total_s = 60")
    (tmp_path / "trainer.py").write_text("def f(r):\n    r.report({'val_f1': 1})\n", encoding="utf-8")
    assert not [d for d in diagnostics(src % "val_f1 = 0.9", str(tmp_path)) if d.severity == "warning"]


def test_a_stop_before_the_last_epoch_is_a_warning() -> None:
    """`stop = { training_iteration = 5 }` with `epochs = 10` cut every trial at 5 without a
    word, while the same cut by `max_t = 5` was warned of."""
    src = BASE + "space { epochs = %s }\nobjective minimize val_loss\ntrials { stop = { %s } }\n"
    (w,) = warnings(src % ("10", "training_iteration = 5"))
    assert (w.code, where(w), w.message) == (
        "HP805", (5, 19), "trials stop at `stop.training_iteration` = 5, before their 10 `epochs`")
    assert w.help == "remove `training_iteration` from `stop` (or set `epochs = 5`, if 5 epochs are meant)"
    (w,) = warnings(src % ("choice(4, 8)", "epoch = 6"))  # the longest trials are cut
    assert w.message == "trials stop at `stop.epoch` = 6, before their 8 `epochs`"
    for fine in (("10", "training_iteration = 10"), ("10", "epoch = 12, time_total_s = 60")):
        assert not warnings(src % fine), fine


@pytest.mark.parametrize("stop", ["training_iteration = 0", "epoch = 0.5", "time_total_s = 0"])
def test_a_stop_every_first_report_reaches_is_a_warning(stop: str) -> None:
    """`training_iteration = 0` reads like "no limit"; Ray ends every trial at its first report."""
    src = BASE + "space { epochs = 3 }\nobjective minimize val_loss\ntrials { stop = { %s } }\n"
    (w,) = warnings(src % stop)
    key, value = stop.split(" = ")
    assert (w.code, where(w)) == ("HP805", (5, 19))
    assert w.message == (f"`stop = {{ {stop} }}` ends every trial at its first report "
                         f"(Ray stops a trial once `{key}` reaches {value})")
    assert w.help == f"remove `{key}` from `stop` for no limit"
    # (one epoch of three would be a cut of its own, HP805 too: the study trains one here)
    assert not warnings(src.replace("epochs = 3", "epochs = 1") % "training_iteration = 1, epoch = 1, time_total_s = 0.5")


def test_scheduler_metric_and_mode_point_to_the_objective() -> None:
    d = one_error(BASE + "objective minimize val_loss\nscheduler asha { metric = val_accuracy }\n")
    assert (d.code, where(d), d.message) == ("HP201", (4, 18), "unknown key `metric` in `scheduler asha`")
    assert d.help == ("the search and the scheduler use the study's objective (its first metric): "
                      "`objective minimize val_loss` or `objective maximize val_accuracy`")
    assert one_error(BASE + "objective minimize val_loss\nsearch optuna { mode = max }\n"
                     "space { a = uniform(0, 1) }\n").help.startswith("the search and the scheduler use")


def test_scheduler_times_take_a_duration_when_time_attr_counts_seconds() -> None:
    # Ray's own PBT example counts `time_total_s`; `perturbation_interval = 2m` was refused.
    obj = "objective minimize val_loss\nspace { lr = loguniform(1e-4, 1e-1), epochs = 50 }\ntrials { num_samples = 8 }\n"
    plan = plan_of(BASE + obj + "scheduler asha { time_attr = time_total_s, max_t = 1h, grace_period = 00:02:00 }\n")
    assert (plan["scheduler"]["options"]["max_t"], plan["scheduler"]["options"]["grace_period"]) == (3600, 120)
    plan = plan_of(BASE + obj + "scheduler pbt { time_attr = time_total_s, perturbation_interval = 2m }\n")
    assert plan["scheduler"]["options"]["perturbation_interval"] == 120
    d = one_error(BASE + obj + "scheduler asha { max_t = 2m }\n")
    assert (d.code, where(d), d.message) == ("HP203", (6, 26), "`max_t` must be an integer, not the duration `2m`")
    assert d.help == ("`max_t` counts `time_attr` units, epochs under `training_iteration`; "
                      "for seconds, set `time_attr = time_total_s`")


def test_a_start_up_option_in_error_is_not_also_warned_of_with_its_default() -> None:
    # `population_size = 1` was refused, and warned of as "its 50 random start-up trials"
    src = BASE + "objective minimize val_loss\nspace { a = uniform(0, 1) }\ntrials { num_samples = 12 }\n"
    d = one_error(src + "search optuna { sampler = nsga2, population_size = 1 }\n")
    assert d.message == "`population_size` must be at least 2 (got 1)"
    assert not warnings(src + "search optuna { sampler = nsga2, population_size = 1 }\n")


def test_an_optuna_pruner_points_to_the_schedulers() -> None:
    d = one_error(BASE + "objective minimize val_loss\nsearch optuna { pruner = median }\n"
                  "space { a = uniform(0, 1) }\n")
    assert (d.code, d.message) == ("HP201", "unknown key `pruner` in `search optuna`")
    assert d.help == ("Ray Tune, not Optuna, stops trials early: `scheduler median` (Optuna's "
                      "MedianPruner) or `scheduler asha` (its SuccessiveHalvingPruner)")


def test_key_in_the_wrong_section_says_where_it_belongs() -> None:
    d = one_error(BASE + "trials { cpus_per_worker = 3 }\n")
    assert (where(d), d.help) == ((3, 10), "`cpus_per_worker` belongs in `resources`")
    d = one_error(BASE + "num_samples = 3\n")
    assert (d.code, where(d), d.message) == ("HP206", (3, 1), "setting `num_samples` outside of a section")
    assert d.help == "`num_samples` belongs in `trials { ... }`"


def test_unknown_searcher_scheduler_logger_and_option() -> None:
    errs = errors(
        BASE + "objective minimize val_loss\nsearch optuan\nscheduler ashaa\nlogger mlfow\n"
        "search_alg = 1\n"
    )
    msgs = [(e.message, where(e), e.help) for e in errs]
    assert ("unknown search `optuan`", (4, 8), "did you mean `optuna`?") in msgs
    assert ("unknown scheduler `ashaa`", (5, 11), "did you mean `asha`?") in msgs
    assert ("unknown logger `mlfow`", (6, 8), "did you mean `mlflow`?") in msgs
    d = one_error(BASE + "objective minimize val_loss\nsearch optuna { samplr = tpe }\nspace { a = uniform(0, 1) }\n")
    assert (d.message, where(d), d.help) == (
        "unknown key `samplr` in `search optuna`", (4, 17), "did you mean `sampler`?",
    )


def test_wrong_option_type_and_enum() -> None:
    d = one_error(BASE + 'objective minimize val_loss\nscheduler asha { max_t = "20" }\n')
    assert (d.code, where(d)) == ("HP203", (4, 26))
    assert d.message == '`max_t` must be an integer, not the string "20"'
    assert d.help == "remove the quotes: 20"
    d = one_error(BASE + "objective minimize val_loss\nsearch optuna { sampler = tpee }\nspace { a = uniform(0, 1) }\n")
    assert d.message == "`sampler` must be `tpe`, `gp`, `cmaes`, `nsga2` or `random`, not the name `tpee`"
    assert (where(d), d.help) == ((4, 27), "did you mean `tpe`?")
    d = one_error(BASE + "trials { num_samples = 2.0 }\n")
    assert (d.message, d.help) == ("`num_samples` must be an integer, not the number `2.0`", "write 2")


def test_a_repeated_sections_unknown_keys_are_reported_with_it() -> None:
    """`trials` written twice, the second with `max_concurent`: the study said only "appears
    twice"; merged, it failed again on the misspelt key."""
    found = errors(BASE + "trials { num_samples = 2 }\ntrials { max_concurent = 3 }\n")
    assert [(d.code, where(d), d.message) for d in found] == [
        ("HP202", (4, 1), "section `trials` appears twice"),
        ("HP201", (4, 10), "unknown key `max_concurent` in `trials`")]
    assert found[1].help == "did you mean `max_concurrent`?"


def test_a_huge_word_in_a_message_is_cut_as_the_source_line_is() -> None:
    """A 5000-character unknown key came back whole in the message and the help, one
    terminal screen of `x`s; the source line under it was already cut."""
    d = one_error(BASE + "trials { num_samples = 4, " + "x" * 5000 + " = 3 }\n")
    head, *_, help = d.render().splitlines()
    assert len(head) < 200 and head.endswith("xxx` in `trials` [HP201]") and "…" in head
    assert "x" * 5000 in d.message  # the diagnostic itself (`--json`) keeps it whole


def test_duplicates() -> None:
    d = one_error(BASE + "trials { num_samples = 2 }\ntrials { num_samples = 3 }\n")
    assert (d.code, where(d), d.message) == ("HP202", (4, 1), "section `trials` appears twice")
    assert d.notes == ("first at line 3",)
    d = one_error(BASE + "trials {\n  num_samples = 2\n  num_samples = 3\n}\n")
    assert (where(d), d.message) == ((5, 3), "`num_samples` is set twice in `trials`")
    d = one_error(BASE + "space {\n  lr = uniform(0, 1)\n  lr = uniform(0, 2)\n}\n")
    assert (where(d), d.message) == ((5, 3), "parameter `lr` is defined twice")
    d = one_error(BASE + "space {\n  opt { lr = uniform(0, 1) }\n  opt.lr = 3\n}\n")
    assert (where(d), d.message) == ((5, 3), "parameter `opt.lr` is defined twice")
    d = one_error(BASE + "space { a = choice(1, 2, 1) }\n")
    assert (d.code, where(d), d.message) == ("HP202", (3, 26), "`choice` lists the number `1` twice")
    # the same rule inside a map or a list: `1` and `1.0` are one number, `true` is not `1`
    d = one_error(BASE + "space { a = choice({ x = 1 }, { x = 1.0 }) }\n")
    assert (d.code, where(d)) == ("HP202", (3, 31))
    d = one_error(BASE + "space { a = choice([1, [2]], [1.0, [2.0]]) }\n")
    assert (d.code, where(d)) == ("HP202", (3, 30))
    assert not errors(BASE + "space { a = choice({ x = 1 }, { x = true }, [1], [true]) }\n")
    d = one_error(BASE + "logger tensorboard\nlogger tensorboard\n")
    assert (where(d), d.message) == ((4, 8), "logger `tensorboard` is configured twice")
    d = one_error(BASE + "objective { minimize a  maximize a }\n")
    assert (where(d), d.message) == ((3, 25), "metric `a` appears twice in `objective`")


def test_parameter_and_group_with_the_same_name() -> None:
    d = one_error(BASE + "space {\n  opt = choice(1, 2)\n  opt.lr = uniform(0, 1)\n}\n")
    assert (where(d), d.message) == ((5, 3), "`opt` is both a parameter and a group (of `opt.lr`)")


def test_missing_required() -> None:
    d = one_error('study "t"\npipeline { getter = data:G }\n')
    assert (d.code, where(d), d.message) == ("HP205", (2, 1), "`pipeline` needs `trainer`")
    d = one_error("pipeline { trainer = t:T }\n")
    assert (d.code, where(d), d.message) == ("HP205", (1, 1), "the study has no name")
    # no pipeline at all (`pipline` misspelt is its own error): not "`pipeline` needs `trainer`"
    d = one_error('study "t"\nspace { lr = uniform(0, 1) }\n')
    assert (d.code, d.message, d.help) == ("HP205", "the study has no `pipeline` block (with `trainer`)",
                                           "add `pipeline { trainer = ... }`")


def test_invalid_names_and_targets() -> None:
    d = one_error('study "my study"\npipeline { trainer = t:T }\n')
    assert (d.code, where(d), d.message) == ("HP204", (1, 7), '"my study" is not a valid study name')
    d = one_error('study "t"\npipeline { trainer = t:T }\nstorage { name = "digits café" }\n')
    assert (d.code, where(d), d.message, d.help) == (
        "HP204", (3, 18), '`name` is not a valid experiment name: "digits café"',
        "use ASCII letters and digits, `.`, `_` and `-`, starting with a letter or digit (it names directories and jobs)")
    # "été" is letters, and "_t" letters and `_`: the hint says what they are not
    for name in ("été", "_t"):
        assert one_error(f'study "{name}"\npipeline {{ trainer = t:T }}\n').help.startswith("use ASCII letters"), name
    d = one_error('study "t"\npipeline { trainer = Trainer }\n')
    assert (where(d), d.message) == ((2, 22), "`trainer` needs a module: `Trainer` alone cannot be imported")
    d = one_error('study "t"\npipeline { trainer = "düata:T" }\n')  # the plan's import paths are ASCII
    assert (where(d), d.message) == ((2, 22), '`trainer` is not a Python import path: "düata:T"')
    d = one_error('study "t"\npipeline { trainer = t:T(1) }\n')
    assert (where(d), d.message) == ((2, 26), "`trainer` takes keyword arguments only")


def test_a_bare_word_in_a_step_argument_is_its_string_as_in_space() -> None:
    """`choice(adam, sgd)` and `act = relu` took bare words; `data:G(mode = train)` was refused."""
    spec = 'study "t"\npipeline {{ trainer = t:T({}) }}\n'
    args = plan_of(spec.format("mode = train, ks = [a, { b = c }], on = true, none = null"))["pipeline"]["trainer"]["args"]
    assert args == {"mode": "train", "ks": ["a", {"b": "c"}], "on": True, "none": None}
    d = one_error(spec.format("on = True"))
    assert (d.code, where(d), d.message, d.help) == (
        "HP203", (2, 31), "argument `on` of `trainer` must be a literal value, not the name `True`", "write `true`")
    d = one_error(spec.format("act = nn.ReLU"))  # reads as an object to build, which hpoc never does
    assert (d.code, where(d), d.help) == ("HP203", (2, 32), 'quote it for the string: "nn.ReLU"')
    assert "not the import path `nn.ReLU`" in d.message
    d = one_error(spec.format("lr = lr") + "space { lr = loguniform(1e-4, 1e-2) }\n")
    assert (d.code, where(d), d.help) == (
        "HP203", (2, 31), 'quote it for the string: "lr"; the trainer reads the value from `config["lr"]`')
    assert d.message.startswith("argument `lr` of `trainer` is the word `lr`, which names a parameter of `space`")
    obj = "objective minimize val_loss\nspace { x = uniform(0, 1) }\n"
    plan = plan_of(BASE + obj + "search nevergrad { optimizer_kwargs = { method = cma } }\n")
    assert plan["search"]["options"]["optimizer_kwargs"] == {"method": "cma"}


def test_names_that_make_too_long_file_names_are_errors() -> None:
    body = 'pipeline { trainer = trainer:T }\n'
    d = one_error(f'study "{"x" * 201}"\n' + body)
    assert (d.code, where(d), d.message) == ("HP204", (1, 7), "the study name must be at most 200 characters (got 201)")
    d = one_error(BASE + f'storage {{ name = "{"y" * 300}" }}\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 18), "`name` must be at most 200 characters (got 300)")
    assert plan_of(f'study "{"x" * 200}"\n' + body)["study"]["name"] == "x" * 200


def test_plan_targets_are_normalised() -> None:
    plan = plan_of('study "t"\npipeline { trainer = pkg.mod.T(lr = 1e-5, layers = [1, 2], opts = { a = true }) }\n')
    assert plan["pipeline"]["trainer"] == {
        "target": "pkg.mod:T",
        "args": {"lr": 1e-05, "layers": [1, 2], "opts": {"a": True}},
    }
    assert plan["pipeline"]["getter"] is None and plan["pipeline"]["splitter"] is None


# ------------------------------------------------------------------------ the space


def test_domain_bounds() -> None:
    cases = [
        ("a = uniform(1, 0)", (3, 24), "`lower` must be less than `upper` in `uniform` (got 1 and 0)"),
        ("a = loguniform(0, 1)", (3, 24), "`loguniform` needs `lower` > 0 (got 0)"),
        ("a = quniform(0, 1, 0)", (3, 28), "`q` must be positive (got 0)"),
        ("a = loguniform(1, 10, base = 1)", (3, 38), "`base` must be positive and not 1 (got 1)"),
        ("a = randn(0, -1)", (3, 22), "`sd` must be positive (got -1)"),
        ("a = choice()", (3, 13), "`choice` needs at least one value for `a`"),
        ("a = grid([])", (3, 13), "`grid` needs at least one value for `a`"),
        ("a = lograndint(0, 5)", (3, 24), "`lograndint` needs `lower` > 0 (got 0)"),
    ]
    for src, loc, msg in cases:
        d = one_error(BASE + f"space {{ {src} }}\n")
        assert (d.code, where(d), d.message) == ("HP302", loc, msg), src


def test_a_scheduler_under_several_objectives_names_the_one_metric_it_compares() -> None:
    two = "objective {\n  minimize val_loss\n  maximize val_accuracy\n}\n"
    (w,) = warnings(BASE + two + "scheduler asha { max_t = 10 }\nspace { a = uniform(0, 1) }\n"
                    "trials { num_samples = 8 }\ntraining { epochs = 10 }\n")
    assert (w.code, where(w)) == ("HP813", (7, 11))
    assert w.message == "`scheduler asha` compares trials on `val_loss` only, the first of the 2 objective metrics"
    assert w.help == "list first in `objective` the metric it should judge trials by"
    assert not warnings(BASE + two + "space { a = uniform(0, 1) }\n")  # fifo compares nothing


def test_an_integer_domain_of_one_value_is_a_warning() -> None:
    """`randint(1, 2)` reads as 1 or 2 but is always 1: the trials all train the same value."""
    (w,) = warnings(BASE + "space { a = randint(1, 2) }\n")
    assert (w.code, where(w), w.message) == ("HP810", (3, 13), "`randint(1, 2)` only ever gives 1")
    assert w.help == "`randint`'s upper bound is exclusive: `randint(1, 3)` gives 1 and 2"
    (w,) = warnings(BASE + "space { a = qlograndint(3, 5, 4) }\n")
    assert w.message == "`qlograndint(3, 5, 4)` only ever gives 4"
    for fine in ("randint(1, 3)", "qrandint(4, 8, 4)", "lograndint(1, 3)", "uniform(1, 2)"):
        assert not warnings(BASE + f"space {{ a = {fine} }}\n"), fine
    d = one_error(BASE + "space { a = randint(3, 3) }\n")
    assert d.help == ("for the one value 3, write the constant `3` (`randint`'s upper bound is exclusive: "
                      "`randint(3, 4)` also gives only 3)")


def test_a_choice_of_one_value_is_a_warning() -> None:
    """`hidden = choice(64)` (the other sizes not yet written, or deleted) passed without a
    word, as `randint(1, 2)` does not: every trial trains the same value."""
    (w,) = warnings(BASE + "space { hidden = choice(64) }\n")
    assert (w.code, where(w), w.message) == ("HP810", (3, 18), "`choice(64)` only ever gives 64")
    assert w.help == "list the other values to search, or write the constant: `hidden = 64`"
    (w,) = warnings(BASE + 'space { act = grid("relu") }\n')
    assert (w.message, w.help) == ('`grid("relu")` only ever gives "relu"',
                                   'list the other values to search, or write the constant: `act = "relu"`')
    assert not warnings(BASE + "space { hidden = choice(32, 64), seed = grid(0, 1) }\n")


def test_a_quantised_log_domain_whose_low_end_rounds_to_one_value_is_a_warning() -> None:
    """`qlograndint(1, 1000, 7)` under optuna: a log scale from 1 puts a third of the draws
    below 10.5, and every one of them rounds to 7."""
    optuna = "search optuna { sampler = tpe }\n"
    (w,) = warnings(BASE + "space { a = qlograndint(1, 1000, 7) }\n" + optuna)
    assert (w.code, where(w)) == ("HP810", (3, 13))
    assert w.message == ("`qlograndint(1, 1000, 7)` gives 7 in about 34% of the trials: `search optuna` "
                         "draws on a log scale from 1 and rounds every draw below 10.5 to 7")
    assert w.help == "start the domain at its first value, `qlograndint(7, 1000, 7)` (7 in about 8%), or use a smaller `q`"
    assert w.notes == ("warned when the draws that round to the first value are a quarter of them or more, "
                       "the log scale starting below it",)
    # from `q` on, or with a low end too short to matter, or drawn by hpoc's own sampler
    # (the multiples of `q` on a log scale), it searches as written
    for fine in ("qlograndint(7, 1000, 7)", "qlograndint(1, 1024, 2)", "qloguniform(0.1, 100, 0.1)"):
        assert not warnings(BASE + f"space {{ a = {fine} }}\n" + optuna), fine
    assert not warnings(BASE + "space { a = qlograndint(1, 1000, 7) }\n")


def test_a_float_range_wider_than_a_float_is_refused() -> None:
    """`uniform(-1e308, 1e308)`: valid for `hpoc check`, and every draw failed in Ray with
    numpy's "OverflowError: Range exceeds valid bounds"."""
    d = one_error(BASE + "space { a = uniform(-1e308, 1e308) }\n")
    assert (d.code, where(d), d.message) == (
        "HP302", (3, 13), "`uniform(-1e+308, 1e+308)` is too wide to sample: `upper - lower` overflows a float")
    assert d.help == "narrow the bounds (or search the exponent: `loguniform`)"
    assert not errors(BASE + "space { a = uniform(-1e307, 1e307) }\n")


def test_quantised_bounds_must_be_multiples_of_q() -> None:
    # Ray raises at the first sample (mid-run) for these; Optuna would step from `lower`.
    cases = [
        ("a = quniform(0.1, 1.1, 0.5)", (3, 22), "`lower` of `quniform` must be a multiple of `q` = 0.5 (got 0.1)",
         "write `quniform(0.5, 1.0, 0.5)`: values are multiples of `q`"),
        ("a = quniform(0, 1, 0.3)", (3, 25), "`upper` of `quniform` must be a multiple of `q` = 0.3 (got 1)",
         "write `quniform(0.0, 0.9, 0.3)`: values are multiples of `q`"),
        ("a = qloguniform(1e-4, 0.15, 0.1)", (3, 25), "`lower` of `qloguniform` must be a multiple of `q` = 0.1 (got 0.0001)",
         "values are multiples of `q`; choose bounds that are"),
        ("a = qrandint(5, 7, 4)", (3, 28), "`qrandint(5, 7, 4)` has no multiple of `q` = 4 between its bounds",
         "values are multiples of `q`; widen the bounds or use a smaller `q`"),
    ]
    for src, loc, msg, help in cases:
        d = one_error(BASE + f"space {{ {src} }}\n")
        assert (d.code, where(d), d.message, d.help) == ("HP302", loc, msg, help), src
    plan = plan_of(BASE + "space { a = quniform(0, 0.5, 0.05)\n b = qrandint(1, 10, 4)\n"
                   " c = qloguniform(1e-6, 1e-2, 1e-6) }\n")
    assert [p["domain"] for p in plan["space"]["params"]] == ["quniform", "qrandint", "qloguniform"]


def test_domain_arguments() -> None:
    d = one_error(BASE + "space { a = unifrom(0, 1) }\n")
    assert (d.code, where(d), d.message, d.help) == (
        "HP301", (3, 13), "unknown search domain `unifrom` for `a`", "did you mean `uniform`?",
    )
    d = one_error(BASE + "space { a = uniform(0, 1, 2) }\n")
    assert (where(d), d.message) == ((3, 27), "`uniform` takes at most 2 arguments (lower, upper)")
    d = one_error(BASE + "space { a = quniform(0, 1) }\n")
    assert (where(d), d.message) == ((3, 13), "`quniform` needs `q` for `a`")
    d = one_error(BASE + "space { a = loguniform(1e-5, 1, bsae = 2) }\n")
    assert (where(d), d.message, d.help) == ((3, 33), "`loguniform` has no argument `bsae`", "did you mean `base`?")
    d = one_error(BASE + "space { a = randint(0, 1e3) }\n")
    assert (d.code, where(d), d.message, d.help) == (
        "HP203", (3, 24), "`upper` of `randint` must be an integer, not the number `1e3`", "write 1000",
    )
    d = one_error(BASE + "space { a = uniform }\n")
    assert (where(d), d.message) == ((3, 13), "`uniform` needs arguments")


def test_domain_plan_args_use_ray_names_and_defaults() -> None:
    plan = plan_of(
        BASE + "space {\n  a = loguniform(1e-4, 1e-1)\n  b = qrandint(1, 9)\n  c = randn()\n"
        "  d = qlograndint(lower = 1, upper = 100, q = 1, base = 2)\n  e = choice([1, 2])\n  f = grid(1, 2)\n}\n"
    )
    args = {p["name"]: (p["domain"], p["args"]) for p in plan["space"]["params"]}
    assert args == {
        "a": ("loguniform", {"lower": 1e-4, "upper": 1e-1, "base": 10}),
        "b": ("qrandint", {"lower": 1, "upper": 9, "q": 1}),
        "c": ("randn", {"mean": 0.0, "sd": 1.0}),
        "d": ("qlograndint", {"lower": 1, "upper": 100, "q": 1, "base": 2}),
        "e": ("choice", {"categories": [1, 2]}),
        "f": ("grid", {"values": [1, 2]}),
    }


def test_groups_give_dotted_names() -> None:
    plan = plan_of(
        BASE + "space {\n  optimizer {\n    name = choice(\"adam\", \"sgd\")\n"
        "    momentum = uniform(0.5, 0.9) if name == \"sgd\"\n  }\n  optimizer.wd = 0.01\n}\n"
        "search optuna\nobjective minimize val_loss\n"
    )
    params = plan["space"]["params"]
    assert [p["name"] for p in params] == ["optimizer.name", "optimizer.momentum"]
    assert params[1]["condition"] == {"param": "optimizer.name", "values": ["sgd"]}
    assert plan["space"]["constants"] == {"optimizer.wd": 0.01}


def test_conditions() -> None:
    src = BASE + 'space {\n  opt = choice("adam", "sgd")\n  lr = uniform(0, 1)\n  %s\n}\n'
    d = one_error(src % 'm = uniform(0, 1) if opt == "sdg"')
    assert (d.code, where(d), d.message, d.help) == (
        "HP303", (6, 31), '`opt` never takes the string "sdg"', "did you mean `sgd`?",
    )
    d = one_error(src % "m = uniform(0, 1) if otp == 1")
    assert (where(d), d.message, d.help) == ((6, 24), "condition on unknown parameter `otp`", "did you mean `opt`?")
    d = one_error(src % "m = uniform(0, 1) if lr == 1")
    assert (where(d), d.message) == ((6, 24), "condition tests `lr`, which is a `uniform` parameter")
    # the parameter under the condition is not one it can test
    d = one_error(src % "m = choice(1, 2) if zzz == 1")
    assert (d.message, d.help) == ("condition on unknown parameter `zzz`", "conditions can test `opt`")
    d = one_error(src % "m = 3 if opt == sgd")
    assert (where(d), d.message) == ((6, 12), "constant `m` cannot be conditional")
    d = one_error(src % 'if opt == "sgd" { if opt == "adam" { m = uniform(0, 1) } }')
    assert (where(d), d.message) == ((6, 24), "`if` blocks cannot be nested")
    plan = plan_of(src % "if opt in [sgd] { m = uniform(0, 1), n = choice(true, false) }")
    conds = [p["condition"] for p in plan["space"]["params"]]
    assert conds == [None, None, {"param": "opt", "values": ["sgd"]}, {"param": "opt", "values": ["sgd"]}]


def test_conditions_that_never_hold_or_repeat_values() -> None:
    src = BASE + 'space {\n  opt = choice("adam", "sgd")\n  %s\n}\n'
    d = one_error(src % "v = uniform(0, 1) if opt in []")
    assert (d.code, where(d), d.message) == ("HP303", (5, 24), "the condition lists no values, so it never holds")
    assert d.help == 'list the values of `opt` it needs, e.g. `if opt in ["adam"]`'
    d = one_error(src % 't = uniform(0, 1) if opt in ["adam", "adam"]')
    assert (d.code, where(d), d.message) == ("HP202", (5, 40), 'the condition lists the string "adam" twice')
    # An `if` block's condition is checked once, not once per setting under it.
    errs = errors(src % 'if opt in [adam, "sgd", sgd, "rms"] { a = uniform(0, 1), b = uniform(0, 1) }')
    assert [(e.code, where(e)) for e in errs] == [("HP202", (5, 27)), ("HP303", (5, 32))]


def test_a_condition_on_a_parameter_whose_domain_is_wrong_is_not_a_second_error() -> None:
    """`choice(adam, sgd)` is one mistake (unquoted names): the condition on it said the
    parameter did not exist, sending the reader to look for a typo that is not there."""
    src = BASE + 'space {\n  opt { name = choice("adam", None) }\n  m = uniform(0, 1) if opt.name == "adam"\n}\n'
    assert [(e.code, where(e)) for e in errors(src)] == [("HP203", (4, 31))]


def test_a_point_or_mutation_naming_a_parameter_whose_domain_is_wrong_is_not_a_second_error() -> None:
    """`loguniform(0, ...)` is one mistake: the point and the mutation naming the parameter
    said it was not in `space`, three errors for one."""
    src = BASE + ("space { lr = loguniform(0, 0.1), epochs = 4 }\nobjective minimize val_loss\n"
                  "trials { num_samples = 4 }\nsearch random { points_to_evaluate = [{ lr = 0.01 }] }\n")
    for sched in ("pbt { hyperparam_mutations { lr = [0.1, 0.01] } }", "pb2 { hyperparam_bounds { lr = [0.01, 0.1] } }"):
        assert [(e.code, where(e)) for e in errors(src + f"scheduler {sched}\n")] == [("HP302", (3, 25))], sched


def test_an_import_path_in_the_space_is_said_to_be_a_string() -> None:
    """`act = nn.ReLU` reads as the class, but the trial gets the string "nn.ReLU" (the
    pipeline refuses the same, HP203; the space keeps it, as a bare word is its string)."""
    ws = warnings(BASE + "space {\n  act = nn.ReLU\n  opt = choice(adam, torch.optim.SGD, [models:Net])\n}\n")
    ws = [w for w in ws if w.code == "HP823"]
    assert [where(w) for w in ws] == [(4, 9), (5, 22), (5, 40)]
    assert ws[0].message == '`nn.ReLU` is the string "nn.ReLU" in the trial config, not the object it names'
    assert 'getattr(torch.nn, "ReLU")' in ws[0].help and 'quote it: "nn.ReLU"' in ws[0].help
    assert not [w for w in warnings(BASE + 'space { act = "nn.ReLU", opt = choice(adam, sgd) }\n')
                if w.code == "HP823"]


def test_a_bare_word_is_a_string_wherever_the_space_takes_a_value() -> None:
    """`if opt == sgd` read the word as "sgd" while `choice(adam, sgd)` was refused: the
    docs call a bare word the same as its string, so every value of the space does."""
    src = BASE + ("space {\n  opt = choice(adam, sgd, torch.optim.SGD)\n  act = relu\n"
                  "  m = uniform(0.5, 0.9) if opt in [sgd, torch.optim.SGD]\n  lr = uniform(0, 1)\n}\n"
                  "objective minimize val_loss\ntrials { num_samples = 4 }\n"
                  "search random { points_to_evaluate = [{ opt = sgd, m = 0.6, lr = 0.1 }] }\n")
    plan = plan_of(src)
    assert plan["space"]["params"][0]["args"] == {"categories": ["adam", "sgd", "torch.optim.SGD"]}
    assert plan["space"]["params"][1]["condition"] == {"param": "opt", "values": ["sgd", "torch.optim.SGD"]}
    assert plan["space"]["constants"] == {"act": "relu"}
    assert plan["search"]["options"]["points_to_evaluate"] == [{"opt": "sgd", "m": 0.6, "lr": 0.1}]
    assert plan_of(src.replace('choice(adam, sgd, torch.optim.SGD)', 'choice("adam", "sgd", "torch.optim.SGD")')
                   )["space"] == plan["space"]
    pbt = BASE + ("space { opt = choice(adam, sgd), lr = uniform(0, 1) }\nobjective minimize val_loss\n"
                  "trials { num_samples = 4 }\nscheduler pbt { hyperparam_mutations { opt = [adam, sgd] } }\n")
    assert plan_of(pbt)["scheduler"]["options"]["hyperparam_mutations"] == {"opt": ["adam", "sgd"]}
    # Python's spellings stay refused, with the word to write: a string "True" would surprise
    d = one_error(BASE + "space { flag = choice(True, false) }\n")
    assert (d.code, where(d), d.message, d.help) == (
        "HP203", (3, 23), "value of `choice` must be a literal value, not the name `True`", "write `true`")
    d = one_error(BASE + "space { flag = choice(true, false), x = uniform(0, 1) if flag == True }\n")
    assert (d.code, d.message, d.help) == ("HP203", "condition value must be a literal value, not the name `True`",
                                           "write `true`")

def test_a_hint_listing_a_long_choice_stays_one_readable_line() -> None:
    """A condition or point off a `choice` of 5000 values got a 38,000-character help."""
    values = ", ".join(str(i) for i in range(5000))
    src = BASE + f"space {{ x = choice({values}), y = uniform(0, 1) if x == 99999 }}\n"
    assert one_error(src).help == "`x` takes `0`, `1`, `2`, `3`, `4`, `5`, `6`, `7`, `8`, `9` or 4990 more"
    src = BASE + (f"space {{ x = choice({values}) }}\nobjective minimize val_loss\ntrials {{ num_samples = 2 }}\n"
                  "search random { points_to_evaluate = [{ x = -1 }] }\n")
    assert one_error(src).help.endswith("`9` or 4990 more")
    short = BASE + 'space { x = choice("a", "b"), y = uniform(0, 1) if x == "c" }\n'
    assert one_error(short).help == '`x` takes `"a"` or `"b"`'


def test_condition_on_a_bool_choice_keeps_types_apart() -> None:
    src = BASE + "space {\n  flag = choice(true, false)\n  x = uniform(0, 1) if flag == 1\n}\n"
    d = one_error(src)
    assert (where(d), d.message) == ((5, 32), "`flag` never takes the number `1`")


def test_condition_cycle() -> None:
    src = BASE + "space {\n  a = choice(1, 2) if b == 1\n  b = choice(1, 2) if a == 1\n}\n"
    # one cycle, one error: at the first parameter of it
    assert [(e.code, e.message, where(e)) for e in errors(src)] == [
        ("HP303", "conditions of `a` form a cycle", (4, 23))]


def test_a_condition_may_name_a_parameter_written_below_it() -> None:
    """The runtime samples in plan order: the parent goes first, whatever the source order."""
    from hpoc.runtime.space import sample_config

    src = BASE + ('space {\n  gamma = uniform(0.5, 0.9) if beta == 1\n  lr = uniform(0, 1)\n'
                  '  beta = choice(1) if opt == "sgd"\n  opt = choice("sgd")\n}\n')
    plan = plan_of(src)
    assert [p["name"] for p in plan["space"]["params"]] == ["lr", "opt", "beta", "gamma"]
    validate(json.loads(dumps(plan)))  # parents before their children: the runtime's contract
    config = sample_config(plan["space"], {}, np.random.default_rng(0))
    assert set(config) == {"lr", "opt", "beta", "gamma"}


# -------------------------------------------------------------- searcher vs space


def test_grid_search_enumerates_a_grid_under_a_condition_as_random_search_does() -> None:
    """`search grid` refused a conditional `grid` parameter while `search random`, which
    enumerates the same grid with the same sampler, ran it."""
    from hpoc.runtime.space import SpaceSamplerCore

    spec = BASE + "search grid\nspace {\n  o = grid(a, b)\n  m = grid(1, 2) if o == a\n}\n"
    assert diagnostics(spec) == []
    core = SpaceSamplerCore(plan_of(spec)["space"], num_samples=1, enumerate_choices=True)
    assert [c for _, c in iter(core.take, None)] == [{"o": "a", "m": 1}, {"o": "a", "m": 2}, {"o": "b"}]


def test_a_condition_that_every_value_meets_is_a_warning_and_no_condition() -> None:
    """`m if o in ["a", "b"]` with `o = choice("a", "b")` is in every trial: hyperopt refused
    it as conditional, and gp/nsga2 were said to pick it at random."""
    spec = (BASE + "objective minimize val_loss\nsearch hyperopt\n"
            "space {\n  o = choice(a, b)\n  m = uniform(0, 1) if o in [a, b]\n}\n")
    (w,) = warnings(spec)
    assert (w.code, where(w)) == ("HP812", (7, 24))
    assert w.message == "the condition holds for every value of `o`: `m` is in every trial"
    assert w.help == "remove the condition"
    assert [p.get("condition") for p in plan_of(spec)["space"]["params"]] == [None, None]
    (w,) = warnings(BASE + "space {\n  o = choice(a, b)\n  if o in [a, b] {\n    m = uniform(0, 1)\n    n = uniform(0, 1)\n  }\n}\n")
    assert w.message == "the condition holds for every value of `o`: `m` and `n` are in every trial"
    # in every trial, so a point of `points_to_evaluate` gives it too
    d = one_error(spec.replace("search hyperopt", "search hyperopt { points_to_evaluate = [{ o = a }] }"))
    assert (d.code, d.message) == ("HP205", "an entry of `points_to_evaluate` has no value for `m`")
    # under a conditional parent, such a condition still says the parent must be there
    spec = (BASE + "space {\n  o = choice(a, b)\n  k = choice(1, 2) if o == a\n  m = uniform(0, 1) if k in [1, 2]\n}\n")
    assert warnings(spec) == [] and plan_of(spec)["space"]["params"][2]["condition"]["param"] == "k"


def test_searcher_cannot_handle_the_space() -> None:
    obj = "objective minimize val_loss\n"
    d = one_error(BASE + obj + "search bayesopt\nspace { opt = choice(1, 2) }\n")
    assert (d.code, where(d)) == ("HP304", (5, 15))
    assert d.message == "`search bayesopt` only handles continuous parameters; `opt` is `choice`"
    assert d.help == "use `search optuna` (TPE is Bayesian too) or make it `uniform(...)`"
    d = one_error(BASE + "search grid\nspace { lr = uniform(0, 1) }\n")
    assert (where(d), d.message) == ((4, 14), "`search grid` only enumerates `grid(...)`; `lr` is continuous (`uniform`)")
    d = one_error(BASE + "search grid\nspace { bs = choice(1, 2) }\n")
    assert d.help == "replace `choice` with `grid` to enumerate it"
    d = one_error(BASE + obj + "search hyperopt\nspace {\n  o = choice(1, 2)\n  m = uniform(0, 1) if o == 1\n}\n")
    assert (where(d), d.message) == ((7, 24), "`search hyperopt` cannot handle conditional parameters (`m`)")
    d = one_error(BASE + obj + "search optuna\nspace { s = grid(1, 2) }\n")
    assert (where(d), d.message) == ((5, 13), "`search optuna` cannot search `grid` values (`s`)")
    d = one_error(BASE + obj + "search optuna\nspace { s = randn(0, 1) }\n")
    assert d.message == "`search optuna` cannot sample normal distributions (`s = randn(...)`)"
    # hpoc's Optuna space quantises a log-scale value itself (runtime.space._suggest):
    # neither an error nor a warning that `q` is ignored
    spec = BASE + obj + "search optuna\nspace { s = qlograndint(5, 100, 5)\n r = qloguniform(1e-3, 1, 1e-3) }\n"
    assert diagnostics(spec) == [] and plan_of(spec)["search"]["algorithm"] == "optuna"
    (w,) = warnings(BASE + obj + "search hebo\n")
    assert (w.code, where(w), w.message) == ("HP802", (4, 8), "`search hebo` has nothing to search: `space` has no parameters")


def test_optuna_sampler_options() -> None:
    obj = "objective minimize val_loss\nspace { a = uniform(0, 1) }\n"
    d = one_error(BASE + obj + "search optuna { sampler = nsga2, n_startup_trials = 5 }\n")
    assert (d.code, where(d), d.message) == ("HP204", (5, 34), "`n_startup_trials` does not apply to `sampler = nsga2`")
    d = one_error(BASE + obj + "search optuna { population_size = 10 }\n")
    assert (where(d), d.message) == ((5, 17), "`population_size` only applies to `sampler = nsga2`")


def test_search_seed_is_a_32_bit_unsigned_integer() -> None:
    src = BASE + "objective minimize val_loss\nspace { lr = uniform(0, 1) }\nsearch %s { seed = %s }\n"
    d = one_error(src % ("random", -1))
    assert (d.code, where(d), d.message) == ("HP204", (5, 24), "`seed` must be at least 0 (got -1)")
    d = one_error(src % ("optuna", 2**32))
    assert d.message == "`seed` must be at most 4294967295 (got 4294967296)"
    assert plan_of(src % ("hyperopt", 2**32 - 1))["search"]["options"]["seed"] == 2**32 - 1


def test_points_to_evaluate_are_checked_against_the_space() -> None:
    src = BASE + (
        "objective minimize val_loss\n"
        'space {\n  lr = loguniform(1e-5, 1e-3)\n  bs = choice(32, 64)\n  n = randint(1, 4)\n'
        '  opt = choice("adam", "sgd")\n  m = uniform(0.5, 0.9) if opt == "sgd"\n  g { wd = uniform(0, 1) }\n}\n'
        "search optuna { points_to_evaluate = [\n%s] }\ntrials { num_samples = 10 }\n"
    )
    good = '  { lr = 1e-3, bs = 64, n = 3, opt = "adam", g = { wd = 0 } },\n'  # `m` is inactive: not needed
    good += '  { lr = 1e-5, bs = 32, n = 1, opt = "sgd", m = 0.5, g.wd = 1 },\n'
    plan = plan_of(src % good)
    assert plan["search"]["options"]["points_to_evaluate"][1] == {
        "lr": 1e-5, "bs": 32, "n": 1, "opt": "sgd", "m": 0.5, "g": {"wd": 1}}
    bad = [
        '  { lr = 1e-3, bs = 48, n = 3, opt = "adam", g.wd = 0 },\n',  # not a category
        '  { lr = 5, bs = 32, n = 3, opt = "adam", g.wd = 0 },\n',  # above the upper bound
        '  { lr = 1e-3, bs = 32, n = 4, opt = "adam", g.wd = 0 },\n',  # randint's upper is exclusive
        '  { lr = "x", bs = 32, n = 3, opt = "adam", g.wd = 0 },\n',  # not a number
        '  { lr = 1e-3, bs = 32, n = 2.0, opt = "adam", g.wd = 0 },\n',  # not an integer
        '  { bs = 32, n = 3, opt = "adam", g.wd = 0 },\n',  # `lr` missing
        '  { lr = 1e-3, bs = 32, n = 3, opt = "sgd", g.wd = 0 },\n',  # `m` is active: missing
        '  { lr = 1e-3, bs = 32, n = 3, opt = "adam", g = { wd = 2 } },\n',  # in a group
        '  { lr = 1e-3, bs = 32, n = 3, opt = "adam", g.wd = 0, lrr = 1 },\n',  # unknown
        "  3,\n",
    ]
    errs = errors(src % "".join(bad))
    got = [(e.code, where(e), e.message) for e in errs]
    assert got == [
        ("HP204", (13, 21), "`bs` in `points_to_evaluate` is 48, not one of its `choice` values"),
        ("HP204", (14, 10), "`lr` in `points_to_evaluate` is 5, outside `loguniform(1e-05, 0.001)`"),
        ("HP204", (15, 29), "`n` in `points_to_evaluate` is 4, outside `randint(1, 4)`"),
        ("HP203", (16, 10), '`lr` in `points_to_evaluate` must be a number, not "x"'),
        ("HP203", (17, 29), "`n` in `points_to_evaluate` must be an integer, not 2.0"),
        ("HP205", (18, 3), "an entry of `points_to_evaluate` has no value for `lr`"),
        ("HP205", (19, 3), "an entry of `points_to_evaluate` has no value for `m`"),
        ("HP204", (20, 57), "`g.wd` in `points_to_evaluate` is 2, outside `uniform(0, 1)`"),
        ("HP201", (21, 56), "`points_to_evaluate` sets `lrr`, which is not a searched parameter"),
        ("HP204", (22, 3), "each entry of `points_to_evaluate` must be a map `{ name = value }`"),
    ]
    assert errs[0].help == "`bs` takes `32` or `64`"
    assert errs[2].help == "`n` takes 1 to 3 (the upper bound of `randint` is exclusive)"
    assert errs[4].help == "write 2"


def test_a_point_that_names_a_grouped_parameter_by_its_own_name_is_told_the_group() -> None:
    """`points_to_evaluate = [{ lr = 0.01 }]` with `optimizer { lr = ... }`: "`lr`, which is
    not a searched parameter" and no help; and each parameter the point left out was an
    error of its own, six at one place for a point of two values."""
    src = BASE + ('objective minimize val_loss\nspace {\n  optimizer { name = choice(adam, sgd), '
                  'lr = loguniform(1e-4, 1e-2) }\n  hidden = choice(16, 32)\n  depth = randint(1, 4)\n}\n'
                  'search random { points_to_evaluate = [{ lr = 0.001, hidden = 16 }] }\n')
    errs = errors(src)
    got = [(e.code, e.message, e.help) for e in errs]
    assert got == [
        ("HP205", "an entry of `points_to_evaluate` has no value for `optimizer.name`, `optimizer.lr` and `depth`",
         "add them: a point sets every parameter that exists in it"),
        ("HP201", "`points_to_evaluate` sets `lr`, which is not a searched parameter",
         "did you mean `optimizer.lr`? (`{ optimizer.lr = ... }`, or `{ optimizer = { lr = ... } }`)"),
    ], got


def test_points_to_evaluate_run_within_the_budget_on_the_grid_of_q() -> None:
    src = BASE + (
        "objective minimize val_loss\n"
        'space {\n  w = qrandint(32, 256, 32)\n  r = quniform(0, 1, 0.1)\n  e = choice({ b1 = 0.9 }, "s")\n}\n'
        "search random { points_to_evaluate = [%s] }\ntrials { num_samples = 2 }\n"
    )
    # a parameter whose value is a map is given whole (it was split into `e.b1`)
    plan = plan_of(src % '{ w = 64, r = 0.3, e = { b1 = 0.9 } }, { w = 32, r = 1, e = "s" }')
    assert plan["search"]["options"]["points_to_evaluate"][0] == {"w": 64, "r": 0.3, "e": {"b1": 0.9}}
    errs = errors(src % '{ w = 50, r = 0.25, e = "s" }, { w = 32, r = 0, e = "s" }, { w = 32, r = 0, e = "s" }')
    assert [(e.code, where(e), e.message, e.help) for e in errs] == [
        ("HP204", (9, 45), "`w` in `points_to_evaluate` is 50, not a multiple of `q` = 32",
         "the values of `qrandint` are multiples of `q`: write 64"),
        ("HP204", (9, 53), "`r` in `points_to_evaluate` is 0.25, not a multiple of `q` = 0.1",
         "the values of `quniform` are multiples of `q`: write 0.2"),
        ("HP204", (9, 98), "`points_to_evaluate` lists 3 points but the study runs 2 trial(s): "
                           "this one and those after it never run",
         "raise `trials.num_samples`, or remove points: they count toward it"),
    ]


def test_points_to_evaluate_need_only_parameters_whose_condition_chain_holds() -> None:
    src = BASE + (
        "objective minimize val_loss\n"
        'space {\n  opt = choice("adam", "sgd")\n  k = choice(1, 2) if opt == "sgd"\n'
        "  j = uniform(0, 1) if k == 2\n}\n"
        "search optuna { points_to_evaluate = [%s] }\n"
    )
    # with opt = adam, `k` does not exist, nor `j` below it: the point needs neither
    assert plan_of(src % '{ opt = "adam" }')["search"]["options"]["points_to_evaluate"] == [{"opt": "adam"}]
    got = [e.message for e in errors(src % '{ opt = "sgd", k = 2 }')]
    assert got == ["an entry of `points_to_evaluate` has no value for `j`"]


def test_a_point_may_not_set_a_parameter_its_own_values_switch_off() -> None:
    # The searcher drops such a value without a word: the trial would run without it.
    src = BASE + (
        "objective minimize val_loss\n"
        "space {\n  opt = choice(adam, sgd)\n  k = choice(1, 2) if opt == sgd\n"
        "  j = uniform(0, 1) if k in [2]\n}\n"
        "search optuna { points_to_evaluate = [%s] }\ntrials { num_samples = 2 }\n"
    )
    errs = errors(src % "{ opt = adam, k = 2 }, { opt = sgd, k = 1, j = 0.5 }")
    assert [(e.code, where(e), e.message, e.help) for e in errs] == [
        ("HP204", (9, 53), "`points_to_evaluate` sets `k`, which does not exist in this point: it exists only "
                           'when `opt` is "sgd", and the point sets `opt = "adam"`',
         'remove `k` from this point, or set `opt` to "sgd"'),
        ("HP204", (9, 82), "`points_to_evaluate` sets `j`, which does not exist in this point: it exists only "
                           "when `k` is 2, and the point sets `k = 1`",
         "remove `j` from this point, or set `k` to 2"),
    ]
    d = one_error(src % "{ opt = adam, j = 0.5 }")
    assert d.message.endswith("it exists only when `k` is 2, and the point has no `k` in use")


def test_searcher_warnings() -> None:
    ws = warnings(BASE + "objective minimize val_loss\nsearch bayesopt\nspace { lr = loguniform(1e-5, 1) }\n")
    assert [(w.code, where(w), w.message) for w in ws] == [
        ("HP802", (5, 14), "`search bayesopt` samples `lr` uniformly, not on a log scale")
    ]
    ws = warnings(BASE + "objective minimize val_loss\nsearch hebo\nspace { lr = quniform(0, 1, 0.1) }\n")
    assert [w.message for w in ws] == ["`search hebo` ignores the quantisation `q` of `lr`"]


def test_multi_objective() -> None:
    multi = "objective {\n  minimize val_loss\n  maximize val_accuracy\n}\n"
    d = one_error(BASE + multi + "search hyperopt\nspace { a = uniform(0, 1) }\n")
    assert (d.code, where(d)) == ("HP304", (3, 1))
    assert d.message == "`search hyperopt` optimises a single metric, but the objective has 2"
    plan = plan_of(BASE + multi + "search optuna { sampler = nsga2 }\nspace { a = uniform(0, 1) }\n")
    assert plan["objective"]["metrics"] == [
        {"name": "val_loss", "mode": "min"},
        {"name": "val_accuracy", "mode": "max"},
    ]
    d = one_error(BASE + multi + "search optuna { sampler = cmaes }\nspace { a = uniform(0, 1) }\n")
    assert d.message == "optuna's `cmaes` sampler optimises a single metric"


def test_objective_needed() -> None:
    errs = errors(BASE + "search optuna\nscheduler asha\nspace { a = uniform(0, 1) }\n")
    assert [(e.code, where(e), e.message) for e in errs] == [
        ("HP402", (3, 8), "`search optuna` needs an objective to optimise"),
        ("HP402", (4, 11), "`scheduler asha` needs an objective to compare trials"),
    ]
    assert errs[0].help == "add `objective minimize val_loss` (or `maximize ...`)"


def test_metric_not_reported_by_default_loop_is_a_warning() -> None:
    (w,) = warnings(BASE + "objective maximize f1\n")
    assert (w.code, where(w)) == ("HP801", (3, 20))
    assert w.message == "metric `f1` is not reported by hpoc's default train loop"


def test_a_metric_the_trainer_source_reports_is_not_warned_about(tmp_path) -> None:
    from hpoc.compiler import compile_path

    spec = tmp_path / "study.hpo"
    spec.write_text('study "m"\npipeline { trainer = pkg.train:T }\nobjective maximize f1\n')
    (tmp_path / "pkg").mkdir()
    trainer = tmp_path / "pkg" / "train.py"
    trainer.write_text(own_trainer() + "    def step(self):\n        return {'loss': 1.0}\n")
    (w,) = compile_path(spec).warnings
    assert w.code == "HP801" and w.notes[-1] == "and the trainer's module has no dict with that key"
    trainer.write_text(own_trainer() + "    def step(self, f):\n        self.report({'f1': f, 'n': 2})\n")
    assert compile_path(spec).warnings == []
    trainer.write_text("def broken(:\n")  # unreadable source: no answer, so the warning stays
    assert [w.code for w in compile_path(spec).warnings] == ["HP803", "HP801"]  # and it is said


@pytest.mark.parametrize("body", [
    "metrics = self.validation_epoch(e)\n        metrics['f1'] = f\n        self.report(metrics)",
    "self.report(dict(self.validation_epoch(e), f1=f))",
    "metrics = self.validation_epoch(e)\n        metrics.update(f1=f)\n        self.report(metrics)",
])
def test_a_metric_added_to_the_reported_dict_by_key_is_not_warned_about(tmp_path, body) -> None:
    from hpoc.compiler import compile_path

    spec = tmp_path / "study.hpo"
    spec.write_text('study "m"\npipeline { trainer = train:T }\nobjective maximize f1\n')
    (tmp_path / "train.py").write_text(own_trainer() + f"    def step(self, e, f):\n        {body}\n")
    assert compile_path(spec).warnings == []


# ------------------------------------------------------------------------ scheduler


def test_scheduler_consistency() -> None:
    obj = "objective minimize val_loss\n"
    d = one_error(BASE + obj + "scheduler asha { max_t = 5, grace_period = 10 }\n")
    assert (d.code, where(d), d.message) == ("HP401", (4, 29), "`grace_period` (10) must not exceed `max_t` (5)")
    d = one_error(BASE + obj + "scheduler asha { reduction_factor = 1 }\n")
    assert (d.code, where(d), d.message) == ("HP204", (4, 37), "`reduction_factor` must be greater than 1 (got 1)")
    d = one_error(BASE + obj + "scheduler bohb\nspace { a = uniform(0, 1) }\n")
    assert (where(d), d.message) == ((4, 11), "`scheduler bohb` works only with `search bohb`")
    d = one_error(BASE + obj + "scheduler pbt\n")
    assert (where(d), d.message) == (
        (4, 11), "`scheduler pbt` has nothing to mutate: no `hyperparam_mutations` and no searched parameters",
    )
    d = one_error(BASE + obj + "space { a = choice(1, 2) }\nscheduler pb2\n")
    assert d.message == "`scheduler pb2` has nothing to mutate: no `hyperparam_bounds` and no bounded numeric parameters"
    plan = plan_of(BASE + obj + "space { a = uniform(0, 1) }\nscheduler pbt\n")  # mutates the space
    assert plan["scheduler"]["options"]["hyperparam_mutations"] is None
    d = one_error(
        BASE + obj + "space { lr = loguniform(1e-4, 1e-1) }\n"
        "scheduler pbt { hyperparam_mutations { lr = loguniform(1e-4, 1e-1), bs = [1, 2] } }\n"
    )
    assert (d.code, where(d), d.message) == ("HP201", (5, 69), "`hyperparam_mutations` names `bs`, which is not in `space`")


def test_a_mutation_of_a_grouped_parameter_by_its_own_name_suggests_the_group() -> None:
    """`hyperparam_mutations { lr = ... }` with `optimizer { lr = ... }`: the help said "add
    it to `space`", where it is, in a group."""
    d = one_error(BASE + "objective minimize val_loss\nspace { optimizer { lr = loguniform(1e-4, 1e-1) } }\n"
                  "scheduler pbt { hyperparam_mutations { lr = loguniform(1e-4, 1e-1) } }\n")
    assert (d.message, d.help) == ("`hyperparam_mutations` names `lr`, which is not in `space`",
                                   "did you mean `optimizer.lr`?")


def test_an_empty_mutation_table_is_the_default_not_an_empty_one() -> None:
    """`hyperparam_bounds {}` was checked as absent but reached the plan as `{}`: the
    runtime's PB2 then had no bounds and refused to start, after the job was queued."""
    head = BASE + "objective minimize val_loss\nspace { lr = uniform(0.001, 0.1), epochs = 4 }\ntrials { num_samples = 4 }\n"
    for sched, key in (("pb2", "hyperparam_bounds"), ("pbt", "hyperparam_mutations")):
        plan = plan_of(head + f"scheduler {sched} {{ {key} {{}} }}\n")
        assert plan["scheduler"] == plan_of(head + f"scheduler {sched}\n")["scheduler"], sched
        assert plan["scheduler"]["options"][key] is None


def test_pbt_plan() -> None:
    plan = plan_of(
        BASE + "objective minimize val_loss\nspace { lr = loguniform(1e-4, 1e-1), bs = choice(1, 2) }\n"
        "scheduler pbt { perturbation_interval = 2, hyperparam_mutations { lr = loguniform(1e-4, 1e-1), bs = [1, 2] } }\n"
    )
    sched = plan["scheduler"]
    assert sched["name"] == "pbt" and sched["time_attr"] == "training_iteration"
    assert sched["options"]["hyperparam_mutations"] == {
        "lr": {"domain": "loguniform", "args": {"lower": 1e-4, "upper": 1e-1, "base": 10}},
        "bs": [1, 2],
    }
    assert sched["options"]["perturbation_interval"] == 2
    assert plan["checkpoint"]["keep"] == 4  # the default of 2 is too few to clone from


def test_population_schedulers_search_randomly_and_keep_checkpoints_to_clone() -> None:
    study = BASE + "objective minimize val_loss\nspace { lr = loguniform(1e-4, 1e-1) }\n"
    for sched in ("pbt", "pb2"):
        d = one_error(study + f"search optuna\nscheduler {sched}\n")
        assert d.code == "HP401" and where(d) == (5, 8)
        assert d.message == (f"`scheduler {sched}` chooses the trials' hyperparameters itself; Ray Tune runs "
                             "it with `search random` or `search grid` only, not `search optuna`")
        assert plan_of(study + f"search random\nscheduler {sched}\n")["checkpoint"]["keep"] == 4
        [w] = warnings(study + f"scheduler {sched}\ncheckpoint {{ keep = 2 }}\ntrials {{ num_samples = 4 }}\n")
        assert w.code == "HP805" and where(w) == (6, 14) and "latest may be deleted" in w.message
        assert not warnings(study + f"scheduler {sched}\ncheckpoint {{ keep = 3 }}\ntrials {{ num_samples = 4 }}\n")
        assert plan_of(study + f"scheduler {sched}\ncheckpoint {{ keep = null }}\n")["checkpoint"]["keep"] is None
    # other schedulers keep the default
    assert plan_of(study + "scheduler asha\n")["checkpoint"]["keep"] == 2


def test_population_perturbations_must_fall_on_checkpoints(tmp_path, monkeypatch, capsys) -> None:
    """Ray's PBT clones the checkpoint a donor reported at its perturbation: with
    `perturbation_interval = 2` and `every = 3` a 6-epoch study ran without one exploit."""
    from hpoc.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "trainer.py").write_text(own_trainer())
    study = BASE + "objective maximize val_accuracy\nspace { lr = loguniform(1e-4, 1e-1), epochs = 6 }\n"

    def check(tail: str) -> str:
        (tmp_path / "s.hpo").write_text(study + tail + "trials { num_samples = 4 }\n")
        assert main(["check", "s.hpo"]) == 0
        return capsys.readouterr().err

    err = check("scheduler pbt { perturbation_interval = 2 }\ncheckpoint { every = 3 }\n")
    assert err.startswith("s.hpo:6:14: warning: `scheduler pbt` clones the checkpoint a trial reports at a "
                          "perturbation (every 2 epochs), but trials checkpoint every 3 epochs: no trial ever "
                          "exploits another in its 6 epochs [HP805]"), err
    assert "= note: PBT skips an exploit when the donor's report at the perturbation has no checkpoint" in err
    assert "= help: set `checkpoint { every = 1 }`, or a `perturbation_interval` that is a multiple of 3" in err
    err = check("scheduler pb2 { perturbation_interval = 1 }\ncheckpoint { every = 2 }\n")
    assert "s.hpo:6:14: warning:" in err and "only every 2 epochs, not every 1" in err
    err = check("scheduler pbt { perturbation_interval = 30, time_attr = time_total_s, synch = true }\n"
                "checkpoint { every = 2 }\n")
    assert "(every 30 `time_total_s`)" in err and "trials repeat the epochs since their latest checkpoint" in err
    assert "synchronous PBT pauses every trial" in err and "= help: set `checkpoint { every = 1 }`\n" in err
    # an interval past the last epoch perturbs nothing: one warning says so, not two
    err = check("scheduler pbt { perturbation_interval = 7 }\ncheckpoint { every = 2 }\n")
    assert err.count("HP805") == 1 and "never exploits a trial: `perturbation_interval` (7)" in err, err
    for fine in ("scheduler pbt { perturbation_interval = 4 }\ncheckpoint { every = 2 }\n",
                 "scheduler pbt { perturbation_interval = 3 }\n",
                 "scheduler asha\ncheckpoint { every = 3 }\n"):
        assert "HP805" not in check(fine), fine


# ------------------------------------------------------------- resources and slurm


def test_resources_must_fit_the_allocation() -> None:
    d = one_error(
        BASE + "resources { workers = 4, gpus_per_worker = 1, cpus_per_worker = 5 }\n"
        "slurm { nodes = 1, gpus_per_node = 2, cpus_per_node = 40 }\n"
    )
    assert (d.code, where(d)) == ("HP501", (3, 13))
    assert d.message == (
        "one trial needs 4 workers × (5 CPUs, 1 GPUs) = 20 CPUs, 4 GPUs, "
        "more than the job's 1 node(s) × (40 CPUs, 2 GPUs) can hold"
    )
    d = one_error(BASE + "resources { cpus_per_worker = 8 }\nslurm { cpus_per_node = 4 }\n")
    assert (where(d), d.message) == ((3, 13), "a worker needs 8 CPUs but a node has 4")
    d = one_error(BASE + "resources { gpus_per_worker = 1 }\nslurm { gpus_per_node = 0 }\n")
    assert (where(d), d.message) == ((3, 13), "trials need GPUs (`gpus_per_worker = 1`) but the job has none")
    d = one_error(BASE + "resources { workers = 2, gpus_per_worker = 0.5 }\n")
    assert (where(d), d.message) == ((3, 26), "fractional `gpus_per_worker` (0.5) needs `workers = 1`")
    plan = plan_of(BASE + "resources { workers = 8, gpus_per_worker = 1, cpus_per_worker = 4 }\nslurm { nodes = 2 }\n")
    assert (plan["slurm"]["gpus_per_node"], plan["slurm"]["cpus_per_node"]) == (4, 17)  # + the driver


def test_a_distributed_trial_leaves_room_for_its_driver() -> None:
    """Its Tune actor takes 0.01 CPU on one node: 4 x 12 CPUs on one 48-CPU node never start."""
    d = one_error(BASE + "resources { workers = 4, gpus_per_worker = 1, cpus_per_worker = 12 }\n"
                  "slurm { nodes = 1, gpus_per_node = 4, cpus_per_node = 48 }\n")  # fmt: skip
    assert (d.code, where(d)) == ("HP501", (3, 13))
    assert d.message == (
        "one trial needs 4 workers × (12 CPUs, 1 GPUs) = 48 CPUs, 4 GPUs, plus 0.01 CPU for the "
        "trial's driver, more than the job's 1 node(s) × (48 CPUs, 4 GPUs) can hold"
    )
    assert d.notes == ("a node fits 4 worker(s), the node that also runs the driver 3",)
    # on two nodes the driver has room; a one-worker trial runs in the driver itself
    plan_of(BASE + "resources { workers = 4, gpus_per_worker = 1, cpus_per_worker = 12 }\n"
            "slurm { nodes = 2, gpus_per_node = 2, cpus_per_node = 25 }\n")  # fmt: skip
    plan_of(BASE + "resources { cpus_per_worker = 48 }\nslurm { cpus_per_node = 48 }\n")
    plan = plan_of(BASE + "resources { workers = 2 }\nslurm { nodes = 1 }\n")
    assert plan["slurm"]["cpus_per_node"] == 3  # the default has room too


@pytest.mark.parametrize("resources, slurm, cap, held, help", [
    # 0.7 of a GPU each: one trial per GPU, not two (the CPUs hold 8)
    ("gpus_per_worker = 0.7", "gpus_per_node = 1, cpus_per_node = 8", 2, 1,
     "or, for 2 at once, lower `gpus_per_worker` to 0.5 (trials share a GPU)"),
    # the default `cpus_per_node` is sized for one trial
    ("gpus_per_worker = 0.5", "gpus_per_node = 1", 2, 1, "or, for 2 at once, raise `slurm.cpus_per_node` to 2"),
    ("gpus_per_worker = 0.6", "gpus_per_node = 1", 3, 1, "or, for 3 at once, raise `slurm.cpus_per_node` to 3 "
                                                       "and lower `gpus_per_worker` to 0.33 (trials share a GPU)"),
    ("workers = 2, gpus_per_worker = 1", "nodes = 2, gpus_per_node = 2, cpus_per_node = 16", 3, 2,
     "or, for 3 at once, raise `slurm.gpus_per_node` or `slurm.nodes`"),
    # two workers and their driver's 0.01 CPU: 8 CPUs hold three trials, not four
    ("workers = 2, cpus_per_worker = 1", "cpus_per_node = 8", 4, 3,
     "or, for 4 at once, raise `slurm.cpus_per_node` to 9"),
])  # fmt: skip
def test_max_concurrent_above_what_the_job_holds_is_a_warning(resources, slurm, cap, held, help) -> None:
    """Ray queues the trials that do not fit without a word: the user asked for more at once."""
    src = BASE + f"resources {{ {resources} }}\nslurm {{ {slurm} }}\ntrials {{ max_concurrent = %d }}\n"
    [w] = warnings(src % cap)
    assert (w.code, where(w)) == ("HP804", (5, 10))
    assert w.message.startswith(f"`max_concurrent = {cap}`, but the job holds {held} trial(s) at once (")
    assert w.message.endswith("): the others wait")
    assert w.help == f"lower `max_concurrent` to {held}; {help}"
    assert not warnings(src % held)


def test_a_time_budget_beyond_the_walltime_without_resume_is_a_warning() -> None:
    """`time_budget = 2h` in a 30-minute job with resume off: the walltime killed the study at
    30 minutes, unsaved, and nothing said the budget could not be spent."""
    src = BASE + "trials { time_budget = 2h }\nresume { enabled = ON }\nslurm { time = 30m }\n"
    (w,) = warnings(src.replace("ON", "false"))
    assert (w.code, where(w)) == ("HP807", (3, 10))
    assert w.message == ("`time_budget` (7200 s) is longer than the job's walltime (00:30:00), and resume is off: "
                         "the walltime ends the study first, unsaved")
    assert w.help == "turn `resume` on (requeued jobs go on with the budget), raise `slurm.time`, or lower `time_budget`"
    assert warnings(src.replace("ON", "true")) == []  # requeued runs spend the rest


def test_nodes_no_trial_can_reach_are_a_warning() -> None:
    """`nodes = 4` for trials of one worker, one at a time: three nodes were held (and charged)
    for the whole job without a word."""
    [w] = warnings(BASE + "trials { num_samples = 8, max_concurrent = 1 }\nslurm { nodes = 4, cpus_per_node = 8 }\n")
    assert (w.code, where(w)) == ("HP804", (4, 9))
    assert w.message == ("the job holds 4 nodes, but at most 1 trial of 1 worker runs at once (`max_concurrent`): "
                         "3 nodes sit idle for the whole job")
    assert w.help == "lower `slurm.nodes` to 1, or raise `max_concurrent`"
    [w] = warnings(BASE + "trials { num_samples = 2 }\nresources { workers = 2 }\nslurm { nodes = 6 }\n")
    assert w.message == ("the job holds 6 nodes, but at most 2 trials of 2 workers run at once (`num_samples`): "
                         "2 nodes sit idle for the whole job")
    assert w.help == "lower `slurm.nodes` to 4, or raise `num_samples`"
    # each shard runs its share of the trials on nodes of its own
    [w] = warnings(BASE + "trials { num_samples = 4 }\nslurm { nodes = 4, array { shards = 4 } }\n")
    assert "at most 1 trial of 1 worker runs at once (`num_samples` over 4 shards)" in w.message
    # Optuna's shards share one budget: any of them may run all 4 trials
    assert not [w for w in warnings(BASE + "trials { num_samples = 4 }\nsearch optuna { n_startup_trials = 2 }\n"
                                           "slurm { nodes = 4, array { shards = 4 } }\n") if w.code == "HP804"]
    assert not warnings(BASE + "trials { num_samples = 8 }\nslurm { nodes = 4, cpus_per_node = 8 }\n")
    assert not warnings(BASE + "trials { num_samples = 2 }\nresources { workers = 4 }\nslurm { nodes = 4 }\n")


def test_gpus_no_trial_uses_are_a_warning() -> None:
    """`slurm { gpus_per_node = 4 }` without `gpus_per_worker`: the job held four GPUs while
    every trial trained on the CPU, and nothing said so."""
    (w,) = warnings(BASE + "slurm { gpus_per_node = 4 }\n")
    assert (w.code, where(w)) == ("HP804", (3, 9))
    assert w.message == ("the job asks for 4 GPUs per node, but trials use none (`resources.gpus_per_worker` "
                         "is 0): they train on the CPU while the GPUs sit idle")
    assert w.help == "set `gpus_per_worker` in `resources` (1, or 0.5 for two trials a GPU), or remove `gpus_per_node`"
    (w,) = warnings(BASE + "slurm { gpus_per_node = 1 }\n")
    assert w.message.startswith("the job asks for 1 GPU per node, but trials use none")
    assert not [w for w in warnings(BASE + "resources { gpus_per_worker = 1 }\nslurm { gpus_per_node = 4 }\n")
                if "use none" in w.message]


def test_gpus_the_trials_at_once_leave_unused_are_a_warning() -> None:
    """`gpus_per_node = 4` for trials of 1 GPU under `max_concurrent = 2`: two GPUs were held
    (and charged) for the whole job without a word, while wholly unused ones were warned of."""
    gpus = "resources { gpus_per_worker = 1 }\n"
    [w] = warnings(BASE + "trials { num_samples = 8, max_concurrent = 2 }\n" + gpus
                   + "slurm { gpus_per_node = 4, cpus_per_node = 8 }\n")
    assert (w.code, where(w)) == ("HP804", (5, 9))
    assert w.message == ("the job holds 4 GPUs (1 node × 4), but at most 2 trials of 1 GPU run at once "
                         "(`max_concurrent`): 2 GPUs sit idle for the whole job")
    assert w.help == "lower `slurm.gpus_per_node` to 2, or raise `max_concurrent` to 4"
    # the CPUs hold one trial at once: the GPUs wait on them
    [w] = warnings(BASE + "trials { num_samples = 8 }\n" + gpus + "slurm { gpus_per_node = 4 }\n")
    assert w.message == ("the job holds 4 GPUs (1 node × 4), but at most 1 trial of 1 GPU runs at once "
                         "(the job's CPUs: `cpus_per_node = 1`): 3 GPUs sit idle for the whole job")
    assert w.help == "lower `slurm.gpus_per_node` to 1, or raise `slurm.cpus_per_node` to 4"
    [w] = warnings(BASE + "trials { num_samples = 2 }\n" + gpus + "slurm { gpus_per_node = 4, cpus_per_node = 8 }\n")
    assert "at most 2 trials of 1 GPU run at once (`num_samples`): 2 GPUs sit idle" in w.message
    assert w.help == "lower `slurm.gpus_per_node` to 2, or raise `num_samples`"
    # two trials a GPU, or as many trials as GPUs: every GPU in use
    assert not warnings(BASE + "trials { num_samples = 8, max_concurrent = 8 }\nresources { gpus_per_worker = 0.5 }\n"
                        "slurm { gpus_per_node = 4, cpus_per_node = 8 }\n")
    assert not warnings(BASE + "trials { num_samples = 8, max_concurrent = 4 }\n" + gpus
                        + "slurm { gpus_per_node = 4, cpus_per_node = 4 }\n")
    # idle nodes are said as nodes, not again as their GPUs
    [w] = warnings(BASE + "trials { num_samples = 8, max_concurrent = 1 }\n" + gpus
                   + "slurm { nodes = 2, gpus_per_node = 1 }\n")
    assert "1 node sits idle" in w.message


HEBO = BASE + "objective minimize val_loss\nspace { x = uniform(0, 1) }\n"


def test_hebo_without_max_concurrent_on_a_bigger_allocation_is_a_warning() -> None:
    """Ray's HEBOSearch runs 8 trials at once unless `max_concurrent` is set: `search hebo`
    on 4 nodes × 8 CPUs of 1-CPU trials left 24 CPUs idle for the whole job without a word."""
    [w] = warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\nslurm { nodes = 4, cpus_per_node = 8 }\n")
    assert (w.code, where(w)) == ("HP804", (7, 20))
    assert w.message == ("the job holds 32 CPUs (4 nodes × 8), but at most 8 trials of 1 CPU run at once "
                         "(HEBO's own limit without `max_concurrent`): 24 CPUs sit idle for the whole job")
    assert w.help == ("lower `slurm.nodes` to 1, or set `max_concurrent = 32` (HEBO then suggests 32 trials "
                      "at a time: more at once, each batch chosen from fewer results)")
    # one node: fewer of its CPUs
    [w] = warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\nslurm { cpus_per_node = 16 }\n")
    assert "8 CPUs sit idle" in w.message and w.help.startswith("lower `slurm.cpus_per_node` to 8, or set")
    # nodes no trial reaches are said as nodes, GPUs as GPUs, with HEBO's limit as the why
    [w] = warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\nslurm { nodes = 16 }\n")
    assert w.message == ("the job holds 16 nodes, but at most 8 trials of 1 worker run at once (HEBO's own "
                         "limit without `max_concurrent`): 8 nodes sit idle for the whole job")
    assert w.help.startswith("lower `slurm.nodes` to 8, or set `max_concurrent = 16` (HEBO then suggests 16")
    [w] = warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\nresources { gpus_per_worker = 1 }\n"
                   "slurm { gpus_per_node = 16, cpus_per_node = 16 }\n")
    assert "at most 8 trials of 1 GPU run at once (HEBO's own limit without `max_concurrent`): 8 GPUs" in w.message
    assert w.help.startswith("lower `slurm.gpus_per_node` to 8, or set `max_concurrent = 16`")
    # HEBO hands out its points_to_evaluate first, past its 8: 12 run at once, then 8
    points = ", ".join(f"{{x = 0.0{i}}}" for i in range(12))
    [w] = warnings(HEBO + f"search hebo {{ points_to_evaluate = [{points}] }}\ntrials {{ num_samples = 64 }}\n"
                   "slurm { nodes = 4, cpus_per_node = 8 }\n")
    assert "at most 12 trials of 1 CPU run at once" in w.message and "20 CPUs sit idle" in w.message
    # each shard's searcher runs its share of the points
    [w] = warnings(HEBO + f"search hebo {{ points_to_evaluate = [{points}] }}\ntrials {{ num_samples = 64 }}\n"
                   "slurm { nodes = 4, cpus_per_node = 8, array { shards = 2 } }\n")
    assert "at most 8 trials of 1 CPU run at once" in w.message
    # what the job holds, or the trials there are, within HEBO's limit; or `max_concurrent` set
    for quiet in ("search hebo\ntrials { num_samples = 64 }\nslurm { cpus_per_node = 8 }\n",
                  "search hebo\ntrials { num_samples = 8 }\nslurm { nodes = 4, cpus_per_node = 8 }\n",
                  "search hebo\ntrials { num_samples = 64, max_concurrent = 32 }\nslurm { nodes = 4, cpus_per_node = 8 }\n",
                  "search hebo { points_to_evaluate = [%s] }\ntrials { num_samples = 64 }\n"
                  "slurm { cpus_per_node = 12 }\n" % points,
                  "search optuna\ntrials { num_samples = 64 }\nslurm { nodes = 4, cpus_per_node = 8 }\n"):
        assert not warnings(HEBO + quiet), quiet


def test_hebo_trials_sharing_a_gpu_the_cpus_run_one_at_a_time_are_still_warned() -> None:
    """HEBO's own limit of 8 silenced the warning of `gpus_per_worker = 0.25` under the default
    `cpus_per_node` (room for one trial): `search hebo` trained one trial at a time unwarned."""
    found = [w for w in warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\n"
                                 "resources { gpus_per_worker = 0.25 }\nslurm { time = 1h }\n") if w.code == "HP804"]
    assert [(w.message, w.help) for w in found] == [(
        "trials of 0.25 GPUs share a GPU, but the job's CPUs hold 1 trial at once (`cpus_per_node` = 1, "
        "the default: room for one trial): the GPUs train 1 at a time, not the 4 their shares hold",
        "set `slurm.cpus_per_node = 4` (4 trials of 1 CPU at once)")]
    # shares past HEBO's 8: room for its 8, not all 10 shares
    [w] = [w for w in warnings(HEBO + "search hebo\ntrials { num_samples = 64 }\n"
                               "resources { gpus_per_worker = 0.1 }\nslurm { time = 1h }\n") if w.code == "HP804"]
    assert w.message.endswith("not the 8 their shares hold") and w.help.startswith("set `slurm.cpus_per_node = 8`")


def test_hebo_with_an_invalid_max_concurrent_is_not_told_it_has_none() -> None:
    """`max_concurrent = 0` (an error) under `search hebo` was also warned of "HEBO's own limit
    without `max_concurrent`" and told to set the `max_concurrent` it had just written."""
    for slurm in ("slurm { cpus_per_node = 32 }", "slurm { nodes = 16 }"):
        found = diagnostics(HEBO + f"search hebo\ntrials {{ num_samples = 64, max_concurrent = 0 }}\n{slurm}\n")
        assert [d.code for d in found] == ["HP204"], slurm


def test_the_checked_hebo_limit_is_rays_default() -> None:
    """The compiler never imports Ray: its HEBO limit is a constant, pinned here to the
    default of Ray's HEBOSearch, so a Ray that changes it fails this test."""
    import inspect

    hebo = pytest.importorskip("ray.tune.search.hebo")
    from hpoc.compiler.tables import HEBO_MAX_CONCURRENT

    assert inspect.signature(hebo.HEBOSearch).parameters["max_concurrent"].default == HEBO_MAX_CONCURRENT


def test_the_checked_driver_cpus_are_the_runtime_s() -> None:
    from hpoc.compiler.tables import TRIAL_DRIVER_CPU
    from hpoc.runtime.session import DRIVER_CPU

    assert TRIAL_DRIVER_CPU == DRIVER_CPU


def test_a_local_run_short_only_of_the_driver_s_cpu_says_so() -> None:
    """2 workers x 1 CPU on a 2-CPU machine: the driver's 0.01 CPU is what is missing."""
    from hpoc.runtime.session import SessionError, check_capacity

    plan = {"resources": {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0}}
    with pytest.raises(SessionError) as exc:
        check_capacity(plan, [{"Resources": {"CPU": 2}}], "this machine")
    assert str(exc.value).startswith("one trial needs 2 worker(s) x (1 CPU), plus 0.01 CPU for the "
                                     "trial's driver; this machine has 2 CPU")
    assert "`--cpus 3`" in str(exc.value)
    check_capacity(plan, [{"Resources": {"CPU": 3}}], "this machine")


def test_a_local_run_short_of_gpus_is_not_told_to_take_more_cpu_slots() -> None:
    """`use_gpu: true` on a laptop was told "`--cpus 1` lets a local run use 1 CPU slots"."""
    from hpoc.runtime.session import SessionError, check_capacity

    plan = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 1}}
    with pytest.raises(SessionError) as exc:
        check_capacity(plan, [{"Resources": {"CPU": 2}}], "this machine")
    assert str(exc.value).startswith("one trial needs 1 worker(s) x (1 CPU, 1 GPU); this machine has 2 CPU and 0 GPU")
    assert "--cpus" not in str(exc.value)


def test_a_yaml_run_short_of_gpus_is_told_in_the_config_s_words() -> None:
    """A YAML study on a machine without GPUs was told to lower `num_workers`/`CPU`/`GPU` "in
    the study": its config turns the GPUs off with `use_gpu: false` in `scaling_config`."""
    from hpoc.runtime.session import SessionError, check_capacity
    from hpoc.runtime.study import _in_spec_words
    from hpoc.yaml import WORDS

    plan = {"resources": {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 1},
            "source": {"format": "yaml", "words": WORDS}}
    with pytest.raises(SessionError) as exc:
        check_capacity(plan, [{"Resources": {"CPU": 8}}], "this machine")
    help = _in_spec_words(plan, str(exc.value)).split("help: ")[1]
    assert help.startswith("set `use_gpu: false` in `scaling_config`") and "to run the trials on CPUs" in help
    assert "`gpus_per_worker`" not in help and "study" not in help and "lower `num_workers`" in help
    plan["source"] = {"format": "hpo"}
    with pytest.raises(SessionError) as exc:
        check_capacity(plan, [{"Resources": {"CPU": 8}}], "this machine")
    assert "help: set `gpus_per_worker = 0` to run the trials on CPUs" in str(exc.value)


@pytest.mark.parametrize(
    "resources,nodes,per_node",
    [("cpus_per_worker = 8, gpus_per_worker = 1", 4, (1, 8)),  # one worker: one node's worth
     ("workers = 3, cpus_per_worker = 2, gpus_per_worker = 1", 2, (2, 5)),  # 2 + 1 workers, driver
     ("workers = 5, cpus_per_worker = 1.5", 2, (0, 5))],
)  # fmt: skip
def test_default_node_sizes_hold_whole_workers(resources: str, nodes: int, per_node: tuple[int, int]) -> None:
    """The defaults fit the trial they were made for (they were split by CPU, not by worker)."""
    plan = plan_of(BASE + f"resources {{ {resources} }}\nslurm {{ nodes = {nodes} }}\n")
    assert (plan["slurm"]["gpus_per_node"], plan["slurm"]["cpus_per_node"]) == per_node


def test_deepspeed_without_gpus_is_a_warning_that_says_the_precision_goes() -> None:
    """DeepSpeed's CPU path trains in fp32: a `precision = bf16` there was dropped silently."""
    (w,) = warnings(BASE + "resources { strategy = deepspeed }\n")
    assert (w.code, where(w), w.notes) == ("HP804", (3, 13), ())
    assert w.message == "DeepSpeed without GPUs (`gpus_per_worker = 0`) runs only with a CPU accelerator"
    for src in ("resources { strategy = deepspeed, deepspeed { precision = bf16 } }\n",
                "resources { strategy = deepspeed }\ntraining { precision = fp16 }\n"):
        (w,) = warnings(BASE + src)
        low = "bf16" if "bf16" in src else "fp16"
        assert w.notes == (f"and in fp32 there: `precision = {low}` is not used",)
    assert not warnings(BASE + "resources { strategy = deepspeed, gpus_per_worker = 1 }\n")


def test_deepspeed() -> None:
    plan = plan_of(BASE + "resources { gpus_per_worker = 1, deepspeed { zero_stage = 3 } }\n")
    assert plan["resources"]["strategy"] == "deepspeed"
    assert plan["resources"]["deepspeed"] == {"zero_stage": 3, "precision": "auto", "config_file": None}
    plan = plan_of(BASE + 'resources { gpus_per_worker = 1, strategy = deepspeed, deepspeed { config = "ds.json" } }\n',
                   workdir="/work/x")  # fmt: skip
    assert plan["resources"]["deepspeed"]["config_file"] == "/work/x/ds.json"
    d = one_error(BASE + "resources { strategy = ddp, deepspeed { zero_stage = 1 } }\n")
    assert (where(d), d.message) == ((3, 13), "`deepspeed` settings given, but `strategy` is `ddp`")
    d = one_error(BASE + "resources { deepspeed { zero_stage = 4 } }\n")
    assert (where(d), d.message) == ((3, 38), "`zero_stage` must be at most 3 (got 4)")


def test_a_ddp_study_says_its_model_leaves_parameters_unused() -> None:
    plan = plan_of(BASE + "resources { workers = 2, find_unused_parameters = true }\n")
    assert plan["resources"]["find_unused_parameters"] is True
    assert plan_of(BASE + "resources { workers = 2 }\n")["resources"]["find_unused_parameters"] is None  # the trainer's
    d = one_error(BASE + "resources { workers = 2, find_unused_parameters = 1 }\n")
    assert "find_unused_parameters" in d.message
    (w,) = warnings(BASE + "resources { gpus_per_worker = 1, strategy = deepspeed, find_unused_parameters = true }\n")
    assert (w.code, where(w)) == ("HP804", (3, 56))
    assert w.message == "`find_unused_parameters` is DDP's: DeepSpeed does not use it"
    assert "ignore_unused_parameters" in w.help


@pytest.mark.parametrize("section, searched, warned", [
    ('"optimizer": {"type": "Adam", "params": {"lr": 0.001}}', "lr = loguniform(1e-4, 1e-2), wd = uniform(0, 1)", "`lr`"),
    ('"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": 0.001}}', "learning_rate = uniform(1e-4, 1e-2)", "`learning_rate`"),
    ('"optimizer": {"type": "Adam"}', "hidden = choice(8, 16)", None),     # nothing it overrides is searched
    ('"zero_optimization": {"stage": 1}', "lr = loguniform(1e-4, 1e-2)", None),  # the trainer's optimizer
])  # fmt: skip
def test_deepspeed_config_owning_the_optimizer_warns_about_searched_lr(tmp_path, section, searched, warned) -> None:
    """A DeepSpeed config with its own optimizer or scheduler trains every trial with the file's
    learning rate: the searched `lr`, and PBT's mutations of it, never reached training, silently."""
    (tmp_path / "ds.json").write_text("{" + section + "}", encoding="utf-8")
    text = (BASE + f"space {{ {searched} }}\nscheduler pbt {{ perturbation_interval = 1 }}\n"
            'resources { gpus_per_worker = 1, workers = 2, deepspeed { config = "ds.json" } }\n')
    found = [d for d in diagnostics(text, str(tmp_path)) if "DeepSpeed config" in d.message]
    if warned is None:
        assert found == []
        return
    (w,) = found
    assert (w.code, w.severity, where(w)) == ("HP804", "warning", (5, 59))  # at `config`
    assert f"the searched {warned} never reaches training" in w.message
    assert w.notes == ("`pbt` mutates it, to no effect: every exploit trains on with the file's values",)
    assert w.help.endswith("; or stop searching it")


def test_deepspeed_without_gpus_warns_at_what_chose_deepspeed() -> None:
    (w,) = warnings(BASE + "\n\nresources {\n  workers = 1\n  deepspeed { zero_stage = 3 }\n}\n")
    assert (w.code, where(w)) == ("HP804", (7, 3))  # the `deepspeed` block, not line 1
    (w,) = warnings(BASE + "resources {\n  strategy = deepspeed\n}\n")
    assert (w.code, where(w)) == ("HP804", (4, 3))


@pytest.mark.parametrize(
    "text,seconds",
    [("30", 1800), ("30:15", 1860), ("02:00:00", 7200), ("1-12", 129600), ("1-12:30", 131400),
     ("2-00:00:10", 172860)],  # seconds round up to the minute, as SLURM does
)  # fmt: skip
def test_slurm_time_formats(text: str, seconds: int) -> None:
    plan = plan_of(BASE + f'slurm {{ time = "{text}" }}\n')
    assert plan["slurm"]["time_s"] == seconds


def test_slurm_time_errors() -> None:
    for bad in ('"25:61:00"', '"1:2:3:4"', '"abc"', '"1-25"', '"0"'):
        d = one_error(BASE + f"slurm {{ time = {bad} }}\n")
        assert (d.code, where(d)) == ("HP502", (3, 16)), bad
    d = one_error(BASE + "slurm { time = 00:61 }\n")
    assert (d.message, d.help) == ('`time` "00:61": seconds must be below 60 (got 61)',
                                   "write `00:01:01` for the same walltime")
    assert one_error(BASE + 'slurm { time = "1:2:3:4" }\n').message == '`time` is not a SLURM time: "1:2:3:4"'
    assert one_error(BASE + 'slurm { time = "90m" }\n').help == "remove the quotes: 90m"  # as `time_limit` says


@pytest.mark.parametrize("text,written", [("270s", "270s"), ("4.5m", "4.5m"), ("00:04:30", "00:04:30"),
                                          ("4:30", "4:30"), ('"0:04:30"', "0:04:30")])
def test_a_walltime_in_seconds_is_the_whole_minutes_slurm_gives(text: str, written: str) -> None:
    """`270s` was refused while `00:04:30` compiled as 270 s: SLURM rounds both up to 5 minutes."""
    plan = plan_of(BASE + f"slurm {{ time = {text} }}\n")
    assert (plan["slurm"]["time"], plan["slurm"]["time_s"]) == ("00:05:00", 300)
    (w,) = [d for d in warnings(BASE + f"slurm {{ time = {text} }}\n") if d.code == "HP808"]
    # `4:30` for four and a half hours, as PBS or LSF would read it, is 4 minutes 30 seconds to SLURM
    hours = f"SLURM reads `{written}` as minutes:seconds; " if written == "4:30" else ""
    assert (where(w), w.message, w.help) == (
        (3, 16), f"SLURM counts walltime in whole minutes: `time` {written} gives the job 00:05:00",
        f"{hours}write `00:05:00` to say so" + (", or `04:30:00` for 4 h 30 min" if hours else ""))
    assert not [d for d in warnings(BASE + "slurm { time = 5m }\n") if d.code == "HP808"]


@pytest.mark.parametrize(
    "text,problem,same",
    [("00:90:00", "minutes must be below 60 (got 90)", "01:30:00"),
     ("1:60", "seconds must be below 60 (got 60)", "00:02:00"),
     ("1-24", "hours must be below 24 (got 24)", "2-00:00:00"),
     ("2-03:75", "minutes must be below 60 (got 75)", "2-04:15:00")],
)  # fmt: skip
def test_slurm_time_fields_out_of_range_say_what_is_wrong(text: str, problem: str, same: str) -> None:
    """SLURM refuses `00:90:00`; the message names the field and gives the time meant."""
    d = one_error(BASE + f"slurm {{ time = {text} }}\n")
    assert (d.code, where(d), d.message, d.help) == (
        "HP502", (3, 16), f'`time` "{text}": {problem}', f"write `{same}` for the same walltime")
    d = one_error(BASE + "resume { grace = 10m }\nslurm { time = 5 }\n")
    assert (where(d), d.message) == ((3, 10), "resume grace time (600 s) must be shorter than the walltime (00:05:00)")
    assert plan_of(BASE + "slurm { time = 90m }\n")["slurm"]["time"] == "01:30:00"
    # the signal SLURM sends `grace` early: whole seconds, 1 to 65535 (what --signal takes)
    for bad in ("20h", "30.5"):
        d = one_error(BASE + f"resume {{ grace = {bad} }}\nslurm {{ time = 2-00:00:00 }}\n")
        assert (d.code, where(d)) == ("HP204", (3, 18)), bad
    d = one_error(BASE + "resume { grace = 0s }\nslurm { time = 2-00:00:00 }\n")
    assert (d.code, where(d), d.message) == (
        "HP502", (3, 10), "resume needs a `grace` of at least 1 s to save before the walltime")
    assert plan_of(BASE + "resume { enabled = false, grace = 0 }\nslurm { time = 10 }\n")  # no --signal then
    assert plan_of(BASE + "resume { grace = 18h }\n")["resume"]["grace_s"] == 64800


def test_a_trial_time_limit_is_a_positive_duration_and_warned_when_the_walltime_ends_first() -> None:
    assert plan_of(BASE + "trials { time_limit = 30m }\n")["trials"]["time_limit_s"] == 1800
    assert plan_of(BASE)["trials"]["time_limit_s"] is None
    assert plan_of(BASE + "trials { time_limit = 90 }\n")["trials"]["time_limit_s"] == 90  # seconds
    d = one_error(BASE + "trials { time_limit = 0s }\n")
    assert (d.code, where(d), d.message) == ("HP204", (3, 23), "`time_limit` must be positive (got 0)")
    d = one_error(BASE + 'trials { time_limit = "soon" }\n')
    assert (d.code, where(d)) == ("HP203", (3, 23))
    assert "a duration such as `90m` or `2h`" in d.message
    d = one_error(BASE + "trials { time_limit = 400d }\n")
    assert d.message == "`time_limit` must be at most 365 days (got 400d)"
    spec = BASE + "trials {\n  time_limit = 3h\n}\nslurm { time = 02:00:00 }\n"
    (w,) = [d for d in warnings(spec) if d.code == "HP807"]
    assert where(w) == (4, 3)
    assert w.message == ("a trial's `time_limit` (10800 s) is not shorter than the job's walltime "
                         "(02:00:00): the walltime stops the trial first")
    assert w.help == "lower `time_limit`, or raise `slurm.time`"
    assert not [d for d in warnings(spec.replace("3h", "1h")) if d.code == "HP807"]
    assert plan_of(spec)["spans"]["trials.time_limit_s"] == "t.hpo:4:3"


def test_a_walltime_that_leaves_no_time_to_train_is_warned() -> None:
    """`time = 1m` with `grace = 30s` compiled silently, and the job requeued itself every
    30 s, for ever, without finishing an epoch."""
    spec = BASE + "resume { grace = 30s }\nslurm {\n  time = 1m\n}\n"
    (w,) = [d for d in warnings(spec) if d.code == "HP808"]
    assert where(w) == (5, 3)
    assert w.message.startswith("the job has 30 s before the walltime signal (`time` 00:01:00 minus "
                                "`resume.grace` 30 s)")
    assert w.help == "raise `slurm.time` to 00:03:30 or more, or lower `resume { grace = ... }`"
    assert not [d for d in warnings(spec.replace("1m", "4m")) if d.code == "HP808"]
    no_resume = spec.replace("grace = 30s", "enabled = false")  # no signal, no requeue
    assert not [d for d in warnings(no_resume) if d.code == "HP808"]


def test_shards() -> None:
    d = one_error(BASE + "trials { num_samples = 2 }\nslurm { array { shards = 4 } }\n")
    assert (d.code, where(d), d.message) == ("HP503", (4, 17), "4 shards but only 2 trials: some shards would be empty")
    d = one_error(BASE + "trials { num_samples = 1 }\nslurm { array { shards = 2 } }\n")
    assert d.message == "2 shards but only 1 trial: some shards would be empty"
    # `num_samples = 0` is the mistake; the default 1 standing in for it makes no second one
    d = one_error(BASE + "trials { num_samples = 0 }\nslurm { array { shards = 2 } }\n")
    assert d.message == "`num_samples` must be at least 1 (got 0)"
    d = one_error(BASE + "trials { num_samples = 8 }\nslurm { array { shards = 2, parallel = 3 } }\n")
    assert (where(d), d.message) == ((4, 29), "`parallel` (3) cannot exceed `shards` (2)")
    plan = plan_of(BASE + "trials { num_samples = 8 }\nslurm { array { shards = 4, parallel = 2 } }\n")
    assert plan["shards"] == {"count": 4, "parallel": 2}
    assert plan["spans"]["shards.count"] == "t.hpo:4:17"
    # a grid multiplies the trials: 1 repetition of 4 x 2 points fills 4 shards
    grid = "space { lr = grid(1, 2, 3, 4), bs = grid(8, 16) }\ntrials { num_samples = 1 }\n"
    for search in ("search grid\n", ""):
        plan = plan_of(BASE + grid + search + "slurm { array { shards = 4 } }\n")
        assert plan["shards"]["count"] == 4
    d = one_error(BASE + grid + "slurm { array { shards = 9 } }\n")
    assert d.message == "9 shards but only 8 trials: some shards would be empty"
    from hpoc.compiler.summary import summarize

    assert "trials: 8 (1 × a grid of 8); each 1 worker × 1 CPU, ddp" in summarize(plan_of(BASE + grid))


def test_a_slurm_count_or_grace_that_is_an_error_is_not_judged_again_by_its_default() -> None:
    """`nodes = "2"` is one mistake: the default 1 standing in for it made the trial not
    fit; a wrong `grace` made the default 120 s warn about the walltime."""
    head = BASE + "objective minimize val_loss\nspace { lr = uniform(0, 1), epochs = 4 }\n"
    cases = {
        'resources { workers = 2, cpus_per_worker = 4 }\nslurm { nodes = "2", cpus_per_node = 4 }\n': (6, 17),
        'resources { workers = "2", gpus_per_worker = 1 }\nslurm { gpus_per_node = 1, nodes = 2 }\n': (5, 23),
        'trials { num_samples = 8 }\nresume { grace = "5m" }\nslurm { time = 4m }\n': (6, 18),
    }
    for tail, at in cases.items():
        assert [(d.code, where(d)) for d in diagnostics(head + tail)] == [("HP203", at)], tail


def test_a_job_array_beyond_slurms_default_max_array_size_warns() -> None:
    """MaxArraySize defaults to 1001 (indices 0-1000): sbatch refuses `--array=0-1500` there."""
    (w,) = warnings(BASE + "trials { num_samples = 3000 }\nslurm { array { shards = 1500 } }\n")
    assert (w.code, where(w)) == ("HP806", (4, 17))
    assert w.message == ("1500 shards make a job array of 1500 tasks; SLURM's default MaxArraySize (1001) "
                         "allows at most 1001")
    assert w.help == "lower `shards` to 1001 or fewer, unless the site allows more"
    assert warnings(BASE + "trials { num_samples = 3000 }\nslurm { array { shards = 1001 } }\n") == []


def test_a_grid_too_large_to_enumerate() -> None:
    values = ", ".join(str(i) for i in range(10))
    space = "space { " + ", ".join(f"p{i} = grid({values})" for i in range(6)) + " }\n"
    d = one_error(BASE + space + "slurm { array { shards = 4 } }\n")  # no follow-on HP503
    assert (d.code, where(d), d.message) == (
        "HP304", (3, 14), "the grid has 1,000,000 points; hpoc enumerates at most 100,000")


def test_mem_takes_the_spellings_sbatch_takes() -> None:
    """sbatch reads the unit in any case, with an optional B; the plan keeps one spelling."""
    for written, plan in (('"64GB"', "64G"), ('"64g"', "64G"), ('"500MB"', "500M"), ("64GB", "64G"),
                          ("64G", "64G"), ("4000", "4000M")):
        assert plan_of(BASE + f"slurm {{ mem = {written} }}\n")["slurm"]["mem"] == plan, written
    assert one_error(BASE + 'slurm { mem = "64 G" }\n').code == "HP203"
    d = one_error(BASE + "slurm { mem = 500m }\n")  # minutes to the lexer: the unit that means megabytes
    assert (d.code, d.message) == ("HP203", "`mem` must be a memory size such as `64G`, not the duration `500m`")
    assert d.help == "write `500M` for megabytes: a size's unit is a capital letter (`500m` is 500 minutes)"


def test_mem_is_read_as_sbatch_reads_it() -> None:
    """`mem = "８G"` (a full-width digit, which sbatch does not read) passed `hpoc check`, and
    `hpoc compile` then refused its own plan with no line to fix. A K size is whole MiB to
    sbatch (rounded up): `100K` is 1 MB, not "0.0976562 MB"."""
    d = one_error(BASE + 'slurm { mem = "٣G" }\n')
    assert (d.code, where(d)) == ("HP203", (3, 15))
    (w,) = warnings(BASE + "slurm { mem = 100K }\n")
    assert w.message.startswith("`mem = 100K` gives each node 1 MB: ")


@pytest.mark.parametrize("written, mib", [('"8g"', 8192), ('"8GB"', 8192), ("8", 8), ('"4000"', 4000), ("100K", 1),
                                          ('"1t"', 1024**2), ('"0"', None), ('"８G"', "HP203"), ('"16 G"', "HP203")])
def test_a_mem_the_check_takes_is_one_the_plan_and_the_runtime_read_as_sbatch(written, mib) -> None:
    """What the check takes, the plan's schema (`hpoc run`'s loader) takes too, and the
    runtime reads the MiB sbatch reads; what sbatch does not read is refused at its line."""
    from hpoc.runtime import memlimit

    src = BASE + f"slurm {{ mem = {written} }}\n"
    if mib == "HP203":
        assert one_error(src).code == "HP203"
        return
    plan = json.loads(dumps(plan_of(src)))
    validate(plan)
    assert memlimit.node_limit(plan, {"SLURM_JOB_ID": "1"}) == (mib * 2**20 if mib else None)


def test_slurm_values() -> None:
    d = one_error(BASE + 'slurm { extra = ["--exclusive", "-s"] }\n')  # the job script takes long ones
    assert (d.code, where(d), d.message) == ("HP204", (3, 33), "`extra` takes long options: `-s` is a short one")
    d = one_error(BASE + 'slurm { extra = ["--time=10"] }\n')
    assert (d.code, where(d), d.message, d.help) == (
        "HP504", (3, 18), "`extra` sets `--time`, which hpoc writes from `time`", "set `time` instead",
    )
    d = one_error(BASE + 'slurm { env = { "BAD-NAME" = "x" } }\n')
    assert (where(d), d.message) == ((3, 17), "`BAD-NAME` is not a valid environment variable name")
    d = one_error(BASE + "slurm { env = { X = [1] } }\n")  # a list has no quotes to add
    assert (d.message, d.help) == ("environment variable `X` must be a string, number or boolean, not a list", None)
    # `null` reads as "unset it": the job exports only what `env` lists, and unsets nothing
    d = one_error(BASE + "slurm { env = { X = null } }\n")
    assert d.help == "leave `X` out: the job exports the variables `env` lists and unsets none"
    assert plan_of(BASE + "slurm { env = { Y = auto } }\n")["slurm"]["env"] == {"Y": "auto"}  # a bare word: its string
    d = one_error(BASE + "slurm { env = { Y = True } }\n")
    assert (d.code, d.help) == ("HP203", 'write `true`, or quote it: "True"')
    assert one_error(BASE + "slurm { env = { Y = a.b } }\n").help == 'quote it: "a.b"'
    d = one_error(BASE + 'slurm { partition = "gpu\\nrm -rf /" }\n')
    assert (where(d), d.message) == ((3, 21), "`partition` must be one line without control characters")
    d = one_error(BASE + "slurm { mem = 64g }\n")  # lowercase: the number 64, then a name
    assert (d.code, where(d), d.message) == ("HP101", (3, 17), "unexpected name `g` right after the number `64`")
    assert d.help.startswith("write `64G`: a size's unit is a capital letter")
    d = one_error(BASE + 'slurm { interface = "ib0; reboot" }\n')
    assert d.message == '`interface` is not a valid network interface name (at most 15 characters): "ib0; reboot"'
    assert one_error(BASE + 'slurm { interface = "a.very-long-iface0" }\n').code == "HP204"  # IFNAMSIZ
    # LUMI's four NICs, NCCL's exclusion syntax: NCCL takes lists, Ray's node address one NIC
    for nics in ("hsn0,hsn1,hsn2,hsn3", "^lo,docker"):
        assert one_error(BASE + f'slurm {{ interface = "{nics}" }}\n').help == (
            "one interface, whose address the Ray nodes take (`ib0`, `hsn0`); give NCCL a list "
            '(`hsn0,hsn1`, `^lo`) in `env`: `NCCL_SOCKET_IFNAME = "hsn0,hsn1"`')
    plan = plan_of(
        BASE + 'slurm {\n  mem = 64G\n  env = { NCCL_DEBUG = "WARN", OMP_NUM_THREADS = 4 }\n'
        '  setup = "module load Python"\n  container { image = "img.sif" }\n}\n',
        workdir="/w",
    )
    s = plan["slurm"]
    assert (s["mem"], s["env"], s["setup"]) == ("64G", {"NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "4"}, ["module load Python"])
    assert s["container"] == {"image": "/w/img.sif", "runtime": "apptainer"}


def test_an_extra_option_sbatch_would_read_as_several_words_is_refused() -> None:
    """sbatch splits an #SBATCH line into words as a shell does and refused the whole job
    script ("Invalid directive found in batch script: b") at submission."""
    d = one_error(BASE + 'slurm { extra = ["--exclusive", "--reservation=a b"] }\n')
    assert (d.code, where(d)) == ("HP204", (3, 33))
    assert d.message == ('`extra` option "--reservation=a b" is 2 words to sbatch, which refuses the job script '
                         '("Invalid directive found in batch script: b")')
    assert d.help == "quote the value, as on a command line: \"--reservation='...'\""
    d = one_error(BASE + 'slurm { extra = ["--reservation=$(touch x) y"] }\n')
    assert d.message.endswith("(\"Invalid directive found in batch script: x)\")")
    assert one_error(BASE + 'slurm { extra = ["--reservation=\'a b"] }\n').message.endswith(
        "has a quote that is not closed: sbatch would refuse the job script")
    fine = ["--reservation='maint window'", "--reservation maint", "--exclusive  # the site asks for it", "--mail-type=END,FAIL"]
    plan = plan_of(BASE + "slurm { extra = [" + ", ".join(f'"{f}"' for f in fine) + "] }\n")
    assert plan["slurm"]["extra"] == fine


def test_gpu_type_asks_for_typed_gpus() -> None:
    """Sites that need `--gres=gpu:a100:4` say so with `gpu_type`; `extra` may not set --gres."""
    plan = plan_of(BASE + 'resources { gpus_per_worker = 1 }\nslurm { gpu_type = "a100" }\n')
    assert (plan["slurm"]["gpus_per_node"], plan["slurm"]["gpu_type"]) == (1, "a100")
    assert plan_of(BASE + "slurm { nodes = 1 }\n")["slurm"]["gpu_type"] is None
    from hpoc.compiler.summary import summarize

    assert "slurm: 1 node × (1 CPU, 1 a100 GPU), time partition default" in summarize(plan)
    d = one_error(BASE + 'slurm { gpu_type = "a100:4" }\n')
    assert (d.code, where(d)) == ("HP204", (3, 20))
    assert d.message.startswith('`gpu_type` is not a valid GPU type (letters, digits')
    d = one_error(BASE + 'slurm { gpus_per_node = 0, gpu_type = "h100" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 28), '`gpu_type` is "h100", but the job asks for no GPUs')
    d = one_error(BASE + 'slurm { extra = ["--gres=gpu:a100:4"] }\n')
    assert d.help == "set `gpus_per_node` instead (and `gpu_type` for typed GPUs: `gpu:a100:4`)"
    from hpoc.dsl.format import format_study
    from hpoc.dsl.parse import parse

    formatted = format_study(parse(BASE + 'slurm { gpus_per_node = 4, gpu_type = "a100" }\n', "t.hpo"))
    assert plan_of(formatted)["slurm"]["gpu_type"] == "a100"  # `hpoc fmt` keeps it


def test_gpu_request_chooses_how_the_job_asks_for_gpus() -> None:
    """`--gres` by default; `per_node` and `none` for sites that want `--gpus-per-node` or no flag."""
    assert plan_of(BASE + "slurm { nodes = 1 }\n")["slurm"]["gpu_request"] == "gres"
    for word in ("gres", "per_node", "none"):
        assert plan_of(BASE + f"slurm {{ gpu_request = {word} }}\n")["slurm"]["gpu_request"] == word
    d = one_error(BASE + "slurm { gpu_request = per_nod }\n")
    assert (d.code, where(d), d.help) == ("HP203", (3, 23), "did you mean `per_node`?")
    assert d.message == "`gpu_request` must be `gres`, `per_node` or `none`, not the name `per_nod`"
    d = one_error(BASE + 'slurm { gpus_per_node = 4, gpu_type = "a100", gpu_request = none }\n')
    assert (d.code, where(d)) == ("HP204", (3, 28))
    assert d.message == '`gpu_type` is "a100", but `gpu_request = none` asks for no GPUs'
    typed = plan_of(BASE + 'slurm { gpus_per_node = 4, gpu_type = "a100", gpu_request = per_node }\n')
    assert (typed["slurm"]["gpu_type"], typed["slurm"]["gpu_request"]) == ("a100", "per_node")
    from hpoc.compiler.summary import summarize

    assert "slurm: 1 node × (1 CPU, 4 a100 GPUs by --gpus-per-node), time" in "\n".join(summarize(typed))
    none = plan_of(BASE + "slurm { gpus_per_node = 4, gpu_request = none }\n")
    assert "(1 CPU, 4 GPUs not asked of SLURM)" in "\n".join(summarize(none))
    d = one_error(BASE + 'slurm { extra = ["--gpus-per-node=4"] }\n')
    assert (d.code, d.help) == ("HP504", "set `gpus_per_node` instead, with `gpu_request = per_node` to have "
                                         "it written as `--gpus-per-node=N`")
    from hpoc.dsl.format import format_study
    from hpoc.dsl.parse import parse

    formatted = format_study(parse(BASE + "slurm { gpus_per_node = 4, gpu_request = none }\n", "t.hpo"))
    assert plan_of(formatted)["slurm"]["gpu_request"] == "none"  # `hpoc fmt` keeps it


def test_sbatch_names_may_not_hold_a_backslash() -> None:
    """sbatch unescapes `\\` in #SBATCH lines even inside quotes: `--account='my\\proj'` is `myproj`."""
    errs = errors(BASE + 'slurm {\n  account = "my\\\\proj"\n  partition = "gpu"\n  qos = "a\\\\b"\n}\n')
    assert [(e.code, where(e), e.message) for e in errs] == [
        ("HP204", (4, 13), "`account` must not contain `\\`: sbatch drops it from #SBATCH lines, even quoted"),
        ("HP204", (6, 9), "`qos` must not contain `\\`: sbatch drops it from #SBATCH lines, even quoted"),
    ]
    assert plan_of(BASE + 'slurm { constraint = "gpu&(a100|h100)" }\n')["slurm"]["constraint"] == "gpu&(a100|h100)"
    # the study name is the job name: it is restricted to letters, digits, `.`, `_`, `-` anyway
    assert one_error('study "a\\\\b"\npipeline { trainer = trainer:T }\n').message == '"a\\b" is not a valid study name'


def test_a_partition_copied_from_sinfo_with_its_default_mark_is_an_error() -> None:
    """sinfo writes the default partition as `batch*`; copied into the spec, sbatch refused
    "invalid partition specified: batch*" only at submission."""
    d = one_error(BASE + 'slurm { partition = "gpu,batch*" }\n')
    assert (d.code, where(d)) == ("HP204", (3, 21))
    assert d.message == '`partition` "gpu,batch*": the `*` is sinfo\'s mark of the default partition, not part of its name'
    assert d.help == 'write `partition = "gpu,batch"`'


def test_container_cannot_bind_paths_with_commas_or_colons() -> None:
    """apptainer's --bind reads `src[:dest[:opts]][,more]`: such a path would bind something else."""
    d = one_error(BASE + 'storage { path = "/p/scratch/run:1,2" }\nslurm { container = { image = "/x.sif" } }\n')
    assert (d.code, where(d)) == ("HP204", (3, 11))
    assert d.message == ('the container cannot bind `storage.path` "/p/scratch/run:1,2": apptainer reads `,` and `:` '
                         "in --bind as separators")
    (d,) = [e for e in diagnostics(BASE + 'slurm { container = { image = "/x.sif" } }\n', workdir="/p/a,b")
            if e.severity == "error"]
    assert d.message.startswith('the container cannot bind the study\'s directory "/p/a,b"')
    plan_of(BASE + 'storage { path = "/p/scratch/run:1,2" }\nslurm { nodes = 1 }\n')  # no container, no bind


def test_an_env_value_that_names_a_variable_is_a_warning() -> None:
    """`PATH = "/opt/x/bin:$PATH"` was exported as the literal `/opt/x/bin:$PATH`: every
    command of the job after it (srun, python3) was not found, and nothing said why."""
    (w,) = warnings(BASE + 'slurm { env = { PATH = "/opt/x/bin:$PATH", NCCL_DEBUG = "INFO" } }\n')
    assert (w.code, where(w)) == ("HP818", (3, 24))
    assert w.message == "`env` exports `PATH` as written: `$PATH` in its value is not expanded"
    assert w.help == 'to expand it on the nodes, export it in `setup`: "export PATH=/opt/x/bin:$PATH"'
    (w,) = warnings(BASE + 'slurm { env = { HF_HOME = "~/hf" } }\n')
    assert w.message == "`env` exports `HF_HOME` as written: `~` in its value is not expanded"
    assert warnings(BASE + 'slurm { env = { PRICE = "5$", MSG = "a b" } }\n') == []


def test_an_env_key_the_job_sets_itself_is_a_warning() -> None:
    """`RAY_ADDRESS` or `RAY_AUTH_TOKEN` in `env` was exported, then overwritten (or unset)
    by the job script: the user's value was never used, and nothing said so."""
    (w,) = warnings(BASE + 'slurm { env = { NCCL_DEBUG = "INFO", RAY_ADDRESS = "10.0.0.1:6379" } }\n')
    assert (w.code, where(w)) == ("HP818", (3, 38))
    assert w.message == "hpoc's job sets `RAY_ADDRESS` itself: the value in `env` is not used"
    assert "its own Ray cluster" in w.help
    (w,) = warnings(BASE + 'slurm { env = { RAY_AUTH_TOKEN = "secret" } }\n')
    assert w.message == "hpoc's job sets `RAY_AUTH_TOKEN` itself: the value in `env` is not used"
    assert "fresh token" in w.help
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "PYTHONUNBUFFERED", "RAY_USAGE_STATS_ENABLED",
                "HPOC_RAY_TOKEN", "HPOC_WALLTIME_REQUEUE"):
        (w,) = warnings(BASE + f'slurm {{ env = {{ {key} = "1" }} }}\n')
        assert w.message.startswith(f"hpoc's job sets `{key}` itself"), key
    assert warnings(BASE + 'slurm { env = { RAY_DEDUP_LOGS = "0", NCCL_SOCKET_IFNAME = "hsn0" } }\n') == []


def test_a_mem_too_small_for_ray_is_a_warning() -> None:
    """`mem = 256` meaning 256 GB is 256 MB to sbatch: the job started, and Ray's processes
    were killed for memory on every node."""
    (w,) = warnings(BASE + "slurm { mem = 256 }\n")
    assert (w.code, where(w)) == ("HP804", (3, 15))
    assert w.message == ("`mem = 256` gives each node 256 MB (a bare number is megabytes, as sbatch reads it): "
                         "Ray's own processes need more than that")
    assert w.help == "write `256G` for gigabytes"
    (w,) = warnings(BASE + "slurm { mem = 512M }\n")
    assert w.help == "raise `mem` to 2G or more, or leave it out for the partition's default"
    assert warnings(BASE + "slurm { mem = 0 }\n") == warnings(BASE + "slurm { mem = 2048 }\n") == []


@pytest.mark.parametrize("key, written, fixed", [
    ("partition", "gpu ", "gpu"), ("partition", "booster, develbooster", "booster,develbooster"),
    ("account", " proj1", "proj1"), ("qos", "normal ", "normal"), ("constraint", "a100 ", "a100")])
def test_site_names_with_spaces_are_refused(key: str, written: str, fixed: str) -> None:
    """sbatch refuses `--partition='gpu '` as an invalid partition, which reads like a name
    the site lacks: the space copied with the name did not show."""
    d = one_error(BASE + f'slurm {{ {key} = "{written}" }}\n')
    assert (d.code, d.message) == ("HP204", f"`{key}` has a space around a name: SLURM's names have none, and "
                                            "sbatch refuses the job")
    assert d.help == f'write `{key} = "{fixed}"`'


@pytest.mark.parametrize("key, written, fixed", [
    ("partition", "--partition=gpu", "gpu"), ("partition", "-p gpu", "gpu"), ("account", "-A proj1", "proj1"),
    ("qos", "--qos normal", "normal")])
def test_a_site_name_written_as_its_sbatch_option_is_refused(key: str, written: str, fixed: str) -> None:
    """`partition = "--partition=gpu"` (copied from a job script's header) went into the
    script as `--partition='--partition=gpu'`, which sbatch refused as a partition the site lacks."""
    d = one_error(BASE + f'slurm {{ {key} = "{written}" }}\n')
    assert (d.code, where(d)) == ("HP204", (3, 9 + len(key) + 3))
    assert d.message == f'`{key}` "{written}" is an sbatch option, not a name: hpoc writes the option itself'
    assert d.help == f'write `{key} = "{fixed}"`'


def test_a_node_local_storage_path_for_a_slurm_job_is_a_warning() -> None:
    """`storage { path = "/tmp/hpo" }` on a cluster: each node wrote its trials to its own
    /tmp, gone with the job, and `hpoc status` on the login node found none of them."""
    (w,) = warnings(BASE + 'storage { path = "/tmp/hpo" }\nslurm { nodes = 1 }\n')
    assert (w.code, where(w)) == ("HP819", (3, 11))
    assert w.message == ("`storage.path` /tmp/hpo is node-local on a cluster: each node of the job writes "
                         "its trials to its own, and the login node (`hpoc status`, `hpoc results`) sees none")
    assert w.help == ('put it on a file system every node shares ("$SCRATCH/hpo", "$WORK/hpo"); /tmp serves '
                      "only a SLURM cluster that is this one machine")
    assert [w.code for w in warnings(BASE + 'storage { path = "/dev/shm/x" }\nslurm { nodes = 1 }\n')] == ["HP819"]
    assert warnings(BASE + 'storage { path = "/tmp/hpo" }\n') == []  # runs here: local is right
    assert warnings(BASE + 'storage { path = "/p/scratch/tmp/hpo" }\nslurm { nodes = 1 }\n') == []


def test_an_sbatch_directive_in_setup_is_an_error() -> None:
    """A job script's header pasted into `setup`: its `#SBATCH --exclusive` sat after the
    script's first command, where sbatch ignores it, and read as a comment."""
    d = one_error(BASE + 'slurm { setup = ["module load X", "#SBATCH --exclusive"] }\n')
    assert (d.code, where(d)) == ("HP504", (3, 35))
    assert d.message == ("`setup` line \"#SBATCH --exclusive\" is an #SBATCH directive: sbatch reads them only "
                         "before the script's first command, and setup runs later")
    assert d.help == 'give the option in `extra`: `extra = ["--exclusive"]`'
    plan_of(BASE + 'slurm { setup = ["# load the site\'s Python", "module load X"] }\n')  # a comment is fine


def test_setup_lines_that_are_not_complete_bash_are_an_error() -> None:
    """The job script runs `setup` inside one `{ ... }` group: `echo 'hi` (a quote left open),
    a stray `}` or an `if` without `fi` made the whole script a bash syntax error, which the
    job met only when it started, after the queue."""
    d = one_error(BASE + 'slurm { setup = ["module load X", "echo \'hi"] }\n')
    assert (d.code, where(d)) == ("HP204", (3, 35))
    assert d.message == ("`setup` line \"echo 'hi\" is not complete bash: unexpected EOF while looking for "
                         "matching `''")
    assert d.help == ("each line is a whole command (or the lines together, as `if ...; then`, `...`, `fi`): "
                      "close what it opens")
    d = one_error(BASE + 'slurm { setup = ["if true; then echo x"] }\n')
    assert (d.code, where(d)) == ("HP204", (3, 9))  # what is left open: all of `setup`
    assert d.message == ("`setup` lines are not complete bash: something they open (`if`, `for`, `case`, `(`, "
                         "`{`) is still open after the last one")
    assert one_error(BASE + 'slurm { setup = ["}"] }\n').code == "HP204"
    plan_of(BASE + 'slurm { setup = ["if true; then", "  echo x", "fi", "A=$(date)"] }\n')


def test_a_here_document_in_setup_is_said_as_one() -> None:
    """`cat > cfg <<EOF`, `a=1`, `EOF`: the job script indents setup lines, so bash never
    finds the `EOF` and the script cannot parse; the error said an `if` or `(` was left
    open, while the user's lines close everything they open."""
    d = one_error(BASE + 'slurm { setup = ["cat > cfg <<EOF", "a=1", "EOF"] }\n')
    assert (d.code, where(d)) == ("HP204", (3, 18))  # at the line that starts it
    assert d.message == ('`setup` line "cat > cfg <<EOF" starts a here-document, which the job script cannot end: '
                         "it indents setup lines, and bash ends one only at `EOF` alone at a line's start")
    assert d.help == "write the file with one command per line: `printf '%s\\n' 'line 1' 'line 2' > file`"


def test_setup_lines_are_not_judged_by_a_bash_older_than_4(tmp_path, monkeypatch) -> None:
    """macOS's /bin/bash is 3.2: it refuses `|&` and `;&`, which the cluster's bash 4+ runs,
    and a valid `make |& tee log` failed `hpoc compile` on a laptop."""
    import os

    from hpoc.compiler import shell_syntax

    fake = tmp_path / "bash"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *BASH_VERSINFO*) echo 3 ;;\n"
                    "*) cat >/dev/null; echo 'bash: line 2: syntax error near unexpected token' >&2; exit 2 ;;\nesac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    shell_syntax._bash_version.cache_clear()
    try:
        assert shell_syntax.setup_syntax_error(["make |& tee log"]) is None
    finally:
        shell_syntax._bash_version.cache_clear()


def test_conda_activate_in_setup_without_conda_s_shell_functions_is_a_warning() -> None:
    """`setup = ["conda activate hpo"]`: the job's bash is not interactive, has no `conda`
    shell function, and the job ended on the node with "CondaError: Run 'conda init' before
    'conda activate'" after waiting in the queue."""
    (w,) = warnings(BASE + 'slurm { setup = ["cd $HOME", "conda activate hpo"] }\n')
    assert (w.code, where(w)) == ("HP824", (3, 30))  # at the line
    assert w.message == ("`setup` line \"conda activate hpo\" needs conda's shell functions, which a batch job's "
                         "non-interactive bash lacks: it fails with \"CondaError: Run 'conda init' before 'conda "
                         "activate'\"")
    (w,) = warnings(BASE + 'slurm { setup = ["module load Anaconda3", "conda activate hpo"] }\n')
    assert "lacks (unless a module loaded before it defines them, as some sites' conda modules do): " in w.message
    assert w.help == ('set them up first: `setup = ["eval \\"$(conda shell.bash hook)\\"", "conda activate hpo"]`, '
                      'or set `python` to the environment\'s interpreter ("<env>/bin/python")')
    (w,) = warnings(BASE + 'slurm { setup = ["micromamba activate hpo"] }\n')
    assert "micromamba shell hook" in w.help
    for first in ('eval \\"$(conda shell.bash hook)\\"', "source ~/miniconda3/etc/profile.d/conda.sh",
                  ". /opt/conda/etc/profile.d/conda.sh", "source ~/.bashrc"):
        assert warnings(BASE + f'slurm {{ setup = ["{first}", "conda activate hpo"] }}\n') == [], first
    assert warnings(BASE + 'slurm { setup = ["source activate hpo"] }\n') == []  # conda's older script


def test_env_values_are_exported_as_written() -> None:
    plan = plan_of(BASE + "slurm { env = { A = true, B = false, C = 1.50, D = 1e3, E = -4, F = \"x\" } }\n")
    assert plan["slurm"]["env"] == {"A": "true", "B": "false", "C": "1.50", "D": "1e3", "E": "-4", "F": "x"}


def test_extra_may_not_set_flags_hpoc_writes_itself() -> None:
    flags = ["--output=/x/y.out", "-o/x", "--error /e", "-e", "--comment=mine", "--signal=USR1@60",
             "--requeue", "--no-requeue", "--out=y"]
    src = BASE + "slurm {\n  mem = 4G\n  extra = [\n" + "".join(f'    "{f}",\n' for f in flags)
    src += '    "--mem-per-cpu=2G",\n    "--exclusive",\n  ]\n}\n'
    errs = errors(src)
    # One caret per offending element, on its own line.
    assert [(e.code, where(e)) for e in errs] == [("HP504", (6 + i, 5)) for i in range(len(flags) + 1)]
    assert errs[0].message == (
        "`extra` sets `--output`, which hpoc writes itself: the job log goes beside plan.json (docs/slurm.md)"
    )
    assert errs[1].message.startswith("`extra` sets `-o`, which hpoc writes itself")
    assert errs[4].message.startswith("`extra` sets `--comment`, which `hpoc submit` sets")
    assert errs[7].message == "`extra` sets `--no-requeue`, which undoes the `--requeue` that resume needs"
    assert errs[8].message.startswith("`extra` sets `--out` (short for `--output`)")
    assert errs[9].message == "`extra` sets `--mem-per-cpu`, which sbatch refuses together with `mem`"
    # Without resume hpoc writes no signal or requeue; without `mem`, --mem-per-cpu is the memory.
    plan = plan_of(BASE + 'resume { enabled = false }\nslurm { extra = ["--requeue", "--mem-per-cpu=2G"] }\n')
    assert plan["slurm"]["extra"] == ["--requeue", "--mem-per-cpu=2G"]


@pytest.mark.parametrize(
    "flag,why",
    [("--test-only", "which makes sbatch only test the job: nothing is submitted"),
     ("--parsable", "which changes what sbatch prints: `hpoc submit` reads the job id from it"),
     ("--wait", "which makes sbatch wait until the job ends"),
     ("-W", "which makes sbatch wait until the job ends"),
     ("--wrap=hostname", "which makes sbatch run that command instead of the job script"),
     # a federation's other cluster: squeue here never lists the job, so status said "submit it"
     ("--clusters=booster", "which sends the job to another cluster, whose jobs `hpoc status` and `hpoc compile` "
                            "do not see (they ask this cluster's squeue)"),
     ("-M booster", "which sends the job to another cluster, whose jobs `hpoc status` and `hpoc compile` "
                    "do not see (they ask this cluster's squeue)")],
)  # fmt: skip
def test_extra_may_not_change_what_sbatch_does_with_the_job_script(flag: str, why: str) -> None:
    """`#SBATCH --test-only` made `sbatch job.sbatch` submit nothing, with exit 0; under
    `hpoc submit`, it and `--parsable` ended in an internal error (submitit could not read
    sbatch's answer), `--parsable` with its job submitted and lost."""
    d = one_error(BASE + f'slurm {{ extra = ["{flag}"] }}\n')
    name = flag.split("=")[0].split()[0]
    assert (d.code, d.message) == ("HP504", f"`extra` sets `{name}`, {why}")


def test_extra_may_not_ask_for_a_signal_the_job_does_not_handle() -> None:
    """With resume off, `--signal=B:USR1@300` killed the batch shell (no trap for it) five
    minutes before the walltime: the study stopped then, not gracefully."""
    d = one_error(BASE + 'resume { enabled = false }\nslurm { extra = ["--signal=B:USR1@300"] }\n')
    assert (d.code, d.message) == ("HP504", "`extra` sets `--signal`, which would stop the job early: its script "
                                            "handles only resume's signal before the walltime")
    assert d.help == "to save the study before the walltime, turn `resume` on (`grace` says when); else remove it"
    d = one_error(BASE + 'resume { enabled = false }\nslurm { extra = ["--sig=USR1@300"] }\n')
    assert d.message.startswith("`extra` sets `--sig` (short for `--signal`), which would stop the job early")


def test_extra_may_not_truncate_the_log_that_resume_appends_to() -> None:
    """`--open-mode=truncate` won over hpoc's `--open-mode=append`: each requeued run of a
    resumed study wiped the log of the runs before it."""
    d = one_error(BASE + 'slurm { extra = ["--open-mode=truncate"] }\n')
    assert (d.code, d.message) == ("HP504", "`extra` sets `--open-mode`, which hpoc writes as `append` for resume: "
                                            "each requeued run adds to the job's log")
    plan = plan_of(BASE + 'resume { enabled = false }\nslurm { extra = ["--open-mode=truncate"] }\n')
    assert plan["slurm"]["extra"] == ["--open-mode=truncate"]


def test_a_job_name_in_extra_names_the_study_line_that_sets_it() -> None:
    """`extra = ["--job-name=foo"]` said "hpoc writes from `study name`", "set `study name`
    instead": there is no such setting; the job is named by `study "..."`."""
    d = one_error(BASE + 'slurm { extra = ["--job-name=foo"] }\n')
    assert (d.code, d.message) == ("HP504", '`extra` sets `--job-name`, which hpoc writes from `study "..."`')
    assert d.help == 'set `study "..."` instead'
    d = one_error(BASE + 'slurm { job_name = "foo" }\n')
    assert d.help == 'hpoc writes `--job-name` from `study "..."`'


@pytest.mark.parametrize(
    "flag,setting",
    [("--tasks-per-node=2", "nodes"), ("--ntasks-per-gpu=1", "nodes"), ("--gpus-per-task=1", "gpus_per_node"),
     ("--gpus-per-socket=2", "gpus_per_node"), ("--cpus-per-gpu=8", "cpus_per_node")],
)  # fmt: skip
def test_extra_may_not_ask_for_tasks_cpus_or_gpus_another_way(flag: str, setting: str) -> None:
    """`--tasks-per-node=2` is sbatch's other name for --ntasks-per-node (and, last, would win);
    the others conflict with the allocation hpoc writes or are refused by sbatch with it."""
    d = one_error(BASE + f'slurm {{ extra = ["{flag}"] }}\n')
    name = flag.split("=")[0]
    assert (d.code, d.message) == ("HP504", f"`extra` sets `{name}`, which hpoc writes from `{setting}`")


@pytest.mark.parametrize("key,help", [
    ("exclusive = true", 'an sbatch option without a setting of its own: write it in `extra`: `extra = ["--exclusive"]`'),
    ('reservation = "maint"', "an sbatch option without a setting of its own: write it in `extra`: "
                              '`extra = ["--reservation=maint"]`'),
    ("mem_per_cpu = 2G", "an sbatch option without a setting of its own: write it in `extra`: "
                         '`extra = ["--mem-per-cpu=2G"]`'),
    ('gres = "gpu:4"', "hpoc writes `--gres` from `gpus_per_node`"),
    ("cpus_per_task = 8", "hpoc writes `--cpus-per-task` from `cpus_per_node`"),
    ("ntasks_per_node = 4", "hpoc writes `--ntasks-per-node` from `nodes`: one task per node, its Ray node"),
    ('output = "x.out"', "sbatch's `--output`, which hpoc writes itself: the job log goes beside plan.json "
                         "(docs/slurm.md); remove it"),
    ("mem_per_node = 4G", "the memory of each node is `mem` (`mem = 4G`)"),
    ("time_limit = 2h", "the job's walltime is `time` (`time = 2h`); `trials.time_limit` stops each trial"),
    ('venv = "/p/venv"', 'activate it in `setup` ("source /p/venv/bin/activate"), or set `python = '
                         '"/p/venv/bin/python"`'),
])  # fmt: skip
def test_an_sbatch_option_written_as_a_slurm_key_says_where_it_goes(key: str, help: str) -> None:
    """`slurm { exclusive = true }` listed the block's keys (`ntasks_per_node`: "did you mean
    `gpus_per_node`?"), not that sbatch options go in `extra`."""
    d = one_error(BASE + f"slurm {{ {key} }}\n")
    assert (d.code, d.help) == ("HP201", help)


def test_extra_may_ask_for_a_generic_resource_other_than_gpus() -> None:
    """CSC's Puhti gives node-local disk as `--gres=nvme:100`: `extra` refused every `--gres`,
    so a study there could not have its scratch disk."""
    plan = plan_of(BASE + 'slurm { extra = ["--gres=nvme:100"] }\n')  # no GPUs: hpoc writes no --gres
    assert plan["slurm"]["extra"] == ["--gres=nvme:100"]
    gpus = 'resources { gpus_per_worker = 1 }\nslurm { gpus_per_node = 4, gpu_type = "v100", '
    plan = plan_of(BASE + gpus + 'gpu_request = per_node, extra = ["--gres=nvme:100"] }\n')
    assert plan["slurm"]["extra"] == ["--gres=nvme:100"]
    # hpoc's own `--gres=gpu:v100:4`: a second --gres line would replace it
    d = one_error(BASE + gpus + 'extra = ["--gres=nvme:100"] }\n')
    assert (d.code, d.message) == ("HP504", "`extra` sets `--gres`, which hpoc writes for the GPUs "
                                            "(`gpu:v100:4`): this line would replace it")
    assert d.help == "set `gpu_request = per_node` (the GPUs as `--gpus-per-node`) and keep `--gres=nvme:100` here"
    d = one_error(BASE + gpus + 'gpu_request = per_node, extra = ["--gres=gpu:v100:4,nvme:100"] }\n')
    assert d.message == "`extra` sets `--gres`, which hpoc writes from `gpus_per_node`"
    assert d.help == ("set `gpus_per_node` instead (and `gpu_type` for typed GPUs: `gpu:a100:4`); "
                      "ask for `nvme:100` as `--gres=nvme:100` here, with `gpu_request = per_node`")


def test_extra_asking_for_a_task_per_gpu_says_hpoc_runs_one_task_per_node() -> None:
    """A site's template (JUWELS: `--ntasks-per-node=4` for 4 GPUs) pasted into `extra`: "set
    `nodes` instead" sent the user to ask for 4 nodes."""
    d = one_error(BASE + 'slurm { extra = ["--ntasks-per-node=4"] }\n')
    assert d.help == ("remove it: the job runs one task per node, its Ray node, which starts each "
                      "trial's processes itself (`resources { workers = ... }`); `nodes` sets the node count")


def test_extra_errors_point_at_each_element() -> None:
    errs = errors(BASE + 'slurm { extra = ["--exclusive", "--nodes=3", "--time=5"] }\n')
    assert [(where(e), e.end_col) for e in errs] == [((3, 33), 44), ((3, 46), 56)]
    d = one_error(BASE + 'slurm { extra = "-N3" }\n')
    assert (where(d), d.message) == ((3, 17), "`extra` sets `-N`, which hpoc writes from `nodes`")


def test_integers_beyond_int64_and_absurd_times_and_sizes_are_errors() -> None:
    big = "99999999999999999999999"
    d = one_error(BASE + f"space {{ x = randint(0, {big}) }}\n")
    assert (d.code, where(d), d.message) == (
        "HP302", (3, 24), f"`upper` of `randint` must be at most 9223372036854775807 (got {big})")
    d = one_error(BASE + f"space {{ x = qrandint(-{big}, 0) }}\n")
    assert (d.code, d.message) == ("HP302", f"`lower` of `qrandint` must be at least -9223372036854775808 (got -{big})")
    d = one_error(BASE + f"space {{ x = uniform(0, {big}) }}\n")
    assert (d.code, d.help) == ("HP302", "write a float such as 1e30 for a number this large")
    assert plan_of(BASE + "space { x = uniform(0, 1e30), y = randint(0, 9223372036854775807) }\n")
    for section in (f"trials {{ num_samples = {big} }}", f"slurm {{ nodes = {big} }}",
                    f"resources {{ cpus_per_worker = {big} }}"):
        d = one_error(BASE + section + "\n")
        assert (d.code, d.message.split(" must ")[1]) == ("HP204", f"be at most 9223372036854775807 (got {big})")
    d = one_error(BASE + "slurm { time = 99999999999999999999:00:00 }\n")
    assert (d.code, d.message) == ("HP502", "`time` must be at most 365 days (got 4166666666666666666-15:00:00)")
    assert plan_of(BASE + "slurm { time = 365-00:00:00 }\n")["slurm"]["time_s"] == 365 * 86400
    d = one_error(BASE + "slurm { mem = 100000000T }\n")
    assert (d.code, where(d), d.message) == ("HP204", (3, 15), "`mem` must be at most 1024T per node (got 100000000T)")
    assert plan_of(BASE + "slurm { mem = 1024T }\n")["slurm"]["mem"] == "1024T"
    d = one_error(BASE + "resume { grace = 99999999999999999999999d }\n")  # was 8639999999999998927331917824 s
    assert d.message == "`grace` must be whole seconds from 0 to 65535 (the limit of SLURM's --signal), got 99999999999999999999999d"
    d = one_error(BASE + "trials { time_budget = 400d }\n")
    assert d.message == "`time_budget` must be at most 365 days (got 400d)"


# ---------------------------------------------------------------- other sections


def test_checkpoint_score_defaults_and_errors() -> None:
    plan = plan_of(BASE + "objective maximize val_accuracy\n")
    assert plan["checkpoint"] == {"every": 1, "keep": 2, "score_attribute": "val_accuracy", "score_order": "max"}
    d = one_error(BASE + "checkpoint { score_attribute = \"f1\" }\n")
    assert (where(d), d.message) == ((3, 14), "`score_order` is needed: `f1` is not an objective metric")
    # "" names no metric: one error there, not a missing score_order and an unreported ``
    d = one_error(BASE + 'checkpoint { score_attribute = "" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 32), "`score_attribute` must not be empty")
    assert [d.code for d in diagnostics(BASE + 'checkpoint { score_attribute = "" }\n')] == ["HP204"]


def test_metric_names_may_be_bare_as_in_objective() -> None:
    # docs/language.md's own `checkpoint` example writes `score_attribute = val_loss`.
    import re

    from hpo_util import ROOT

    docs = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```hpo\n(.*?)```", docs, re.S) if "score_attribute" in b]
    plan = plan_of(BASE + "objective minimize val_loss\n" + example + "scheduler asha { time_attr = epoch }\n")
    assert (plan["checkpoint"]["score_attribute"], plan["scheduler"]["time_attr"]) == ("val_loss", "epoch")
    assert plan_of(BASE + 'checkpoint { score_attribute = "val/f1", score_order = max }\n')["checkpoint"][
        "score_attribute"] == "val/f1"
    d = one_error(BASE + "checkpoint { score_attribute = 3 }\n")
    assert d.message == "`score_attribute` must be a metric name, not the number `3`"


def test_conditions_only_in_space_and_labels() -> None:
    d = one_error(BASE + 'trials { num_samples = 2 if a == 1 }\n')
    assert (d.code, where(d)) == ("HP206", (3, 29))
    d = one_error(BASE + "trials x { num_samples = 2 }\n")
    assert (where(d), d.message) == ((3, 8), "section `trials` takes no label")
    d = one_error(BASE + "search { seed = 1 }\n")
    assert (where(d), d.message) == ((3, 1), "`search` needs an algorithm")


# --------------------------------------------------------------- error reporting


def test_all_errors_are_reported_together_in_source_order() -> None:
    errs = errors(
        BASE + "trials { num_samples = 0 }\nresources { workers = -1 }\nspace { a = uniform(2, 1) }\n"
    )
    assert [where(e) for e in errs] == [(3, 24), (4, 23), (5, 24)]


def test_rendered_report_and_pickling() -> None:
    with pytest.raises(SpecCheckError) as info, installed():
        compile_source(BASE + "trials {\n  max_concurent = 3\n}\n", "t.hpo", "/tmp")
    text = str(info.value)
    assert text.splitlines()[:4] == [
        "t.hpo:4:3: error: unknown key `max_concurent` in `trials` [HP201]",
        " 4 |   max_concurent = 3",
        "   |   ^^^^^^^^^^^^^",
        "  = help: did you mean `max_concurrent`?",
    ]
    assert text.endswith("error: could not compile the study (1 error)")
    clone = pickle.loads(pickle.dumps(info.value))
    assert isinstance(clone, SpecError) and str(clone) == text


def test_clean_examples_have_no_diagnostics() -> None:
    from hpo_util import EXAMPLES

    for path in EXAMPLES.values():
        assert diagnostics(path.read_text(encoding="utf-8"), str(path.parent)) == [], path


def test_paths_expand_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRATCH", "/p/scratch/me")
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    plan = plan_of(BASE + 'storage { path = "$SCRATCH/hpo" }\nslurm { container { image = "${SCRATCH}/t.sif" } }\n')
    assert plan["storage"]["path"] == "/p/scratch/me/hpo"
    assert plan["slurm"]["container"]["image"] == "/p/scratch/me/t.sif"
    d = one_error(BASE + 'storage { path = "$NOPE_NOT_SET/hpo" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 11), "`path` uses `$NOPE_NOT_SET`, which is not set here")


def test_a_loggers_folder_expands_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tracking_uri = "$SCRATCH/mlruns"` put the runs in a directory named `$SCRATCH` beside
    the spec, where neither `mlflow ui` nor the user looked; storage.path expanded it."""
    monkeypatch.setenv("SCRATCH", "/p/scratch/me")
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    plan = plan_of(BASE + 'logger mlflow { tracking_uri = "$SCRATCH/mlruns" }\n'
                          'logger tensorboard { tracking_uri = "file:${SCRATCH}/tb" }\n')
    assert [lg["tracking_uri"] for lg in plan["loggers"]] == ["/p/scratch/me/mlruns", "file:/p/scratch/me/tb"]
    for kept in ("http://$HOST:5000", "file:./mlruns", "mlruns", "file:///p/x"):  # a server: as given
        assert plan_of(BASE + f'logger mlflow {{ tracking_uri = "{kept}" }}\n')["loggers"][0]["tracking_uri"] == kept
    d = one_error(BASE + 'logger mlflow { tracking_uri = "$NOPE_NOT_SET/mlruns" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 17), "`tracking_uri` uses `$NOPE_NOT_SET`, which is not set here")


def test_a_tensorboard_logger_refuses_a_server_uri() -> None:
    """TensorBoard's events go to a folder: `tracking_uri = "http://host:6006"` (or s3://)
    made a folder `http:/host:6006` beside the spec, silently."""
    for uri in ("http://host:6006", "s3://bucket/tb"):
        d = one_error(BASE + f'logger tensorboard {{ tracking_uri = "{uri}" }}\n')
        assert (d.code, d.message) == ("HP204", f'`tracking_uri` of `logger tensorboard` is a URI ("{uri}"): '
                                                 "TensorBoard writes its event files to a folder")
    assert plan_of(BASE + 'logger tensorboard { tracking_uri = "file:tb" }\n')["loggers"][0]["tracking_uri"] == "file:tb"


def test_a_tensorboard_logger_takes_the_folder_it_writes_to() -> None:
    """The runtime and docs/results.md put TensorBoard's event directories under the
    logger's `tracking_uri`, which the language refused."""
    plan = plan_of(BASE + 'logger tensorboard { tracking_uri = "tb" }\n')
    assert plan["loggers"] == [{"kind": "tensorboard", "experiment_name": None, "log_freq": "epoch",
                                "tracking_uri": "tb"}]


def test_a_file_uri_is_the_path_it_names() -> None:
    """Ray takes `file:///scratch/hpo` for a path of this filesystem: it was refused as
    "remote storage"."""
    assert plan_of(BASE + 'storage { path = "file:///p/scratch/my%20hpo" }\n')["storage"]["path"] == "/p/scratch/my hpo"
    assert plan_of(BASE + 'storage { path = "file://localhost/p/x" }\n')["storage"]["path"] == "/p/x"
    d = one_error(BASE + 'storage { path = "s3://bucket/hpo" }\n')
    assert d.message == '`path` is a URI ("s3://bucket/hpo"): remote storage is not supported'


def test_a_path_for_an_unknown_user_or_an_empty_path_is_an_error() -> None:
    """`~nouser/x` stayed a relative folder named `~nouser` beside the spec; `""` was the
    spec's own folder."""
    d = one_error(BASE + 'storage { path = "~no_such_user_hpoc/x" }\n')
    assert (d.code, where(d), d.message) == (
        "HP204", (3, 11), "`path` starts with `~no_such_user_hpoc`, but there is no user `no_such_user_hpoc` here")
    d = one_error(BASE + 'storage { path = "" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 11), "`path` is empty")
    d = one_error(BASE + 'resources { deepspeed { config = " " } }\n')
    assert d.message == "`config` is empty"

def test_slurm_python_expands_like_paths_and_is_one_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("VENV", "/p/venv")
    plan = plan_of(BASE + 'slurm { python = "~/venv/bin/python" }\n')
    assert plan["slurm"]["python"] == "/home/me/venv/bin/python"
    assert plan_of(BASE + 'slurm { python = "$VENV/bin/python" }\n')["slurm"]["python"] == "/p/venv/bin/python"
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    d = one_error(BASE + 'slurm { python = "$NOPE_NOT_SET/bin/python" }\n')
    assert (d.code, where(d), d.message) == ("HP204", (3, 9), "`python` uses `$NOPE_NOT_SET`, which is not set here")
    d = one_error(BASE + 'slurm { python = "python3 -X dev" }\n')
    assert (d.code, where(d), d.message) == (
        "HP204", (3, 18), "`python` must be one program, not a command line")
    assert "env" in d.help
    assert plan_of(BASE + 'slurm { python = "/home/me/My Envs/bin/python" }\n')  # quoted as one word


@pytest.mark.parametrize("key", ["python", "partition", "account", "qos", "constraint"])
@pytest.mark.parametrize("value", ['""', '"  "'])
def test_empty_slurm_names_are_errors(key: str, value: str) -> None:
    d = one_error(BASE + f"slurm {{ {key} = {value} }}\n")
    assert (d.code, d.message, d.help) == ("HP204", f"`{key}` must not be empty", "leave the setting out to use the default")


def test_every_diagnostic_code_is_documented():
    # Users look codes up in docs/language.md; a code added in the source must be listed there.
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    used = {m for p in (root / "hpoc").rglob("*.py")
            for m in re.findall(r"[\"'](HP\d{3})[\"']", p.read_text(encoding="utf-8"))}
    table = set(re.findall(r"^\| (HP\d{3}) \|", (root / "docs" / "language.md").read_text(encoding="utf-8"), re.M))
    assert len(used) > 30
    assert used - table == set(), "codes missing from the table in docs/language.md"


def test_a_study_module_named_like_a_standard_module_is_an_error(tmp_path) -> None:
    """`random.py` beside the study replaces Python's `random` for torch and Ray: refused, located."""
    spec = 'study "t"\npipeline {\n  getter  = random:Getter\n  trainer = trainer:T\n}\n'
    assert diagnostics(spec, str(tmp_path)) == []  # no such file beside it: the real module
    (tmp_path / "random.py").write_text("class Getter:\n    def execute(self):\n        return [1], [2]\n")
    (d,) = diagnostics(spec, str(tmp_path))
    assert (d.code, where(d), d.message) == (
        "HP204", (3, 13), "the study's module `random` has the name of Python's `random` module")
    assert d.help == "rename random.py (e.g. to `my_random.py`) and `getter` with it"
    (tmp_path / "trainer.py").write_text(own_trainer())  # not a standard module name
    assert [x.message for x in diagnostics(spec, str(tmp_path))] == [d.message]


def test_population_schedulers_need_multi_worker_trials_that_hand_their_checkpoints_to_tune() -> None:
    """A multi-worker trial is a Ray Train run whose checkpoints Tune never sees: on SLURM,
    PBT with `workers = 2` ran as a plain random search (no exploit, nothing said)."""
    study = BASE + "objective minimize val_loss\nspace { lr = loguniform(1e-4, 1e-1) }\n"
    for sched in ("pbt", "pb2"):
        d = one_error(study + f"scheduler {sched}\nresources {{ workers = 2, reuse_workers = false }}\n")
        assert d.code == "HP401" and where(d) == (6, 26), d.render()
        assert "no trial would ever exploit another" in d.message and "defaults to true" in d.help
        for given in ("", ", reuse_workers = true"):
            plan = plan_of(study + f"scheduler {sched}\nresources {{ workers = 2{given} }}\n")
            assert plan["resources"]["reuse_workers"] is True
    asha = plan_of(study + "scheduler asha\nresources { workers = 2 }\n")
    assert asha["resources"]["reuse_workers"] is False  # elsewhere the default stays


def test_null_where_a_setting_takes_no_null_says_to_leave_it_out() -> None:
    d = one_error(BASE + "trials { num_samples = null }\n")
    assert (d.code, where(d), d.message) == ("HP203", (3, 24), "`num_samples` must be an integer, not `null`")
    assert d.help == "leave `num_samples` out for its default, `1`"
    d = one_error(BASE + "resources { strategy = null }\n")
    assert d.help == "leave `strategy` out for its default"
    assert one_error(BASE + "training { compile = null }\n").help == "leave `compile` out for its default, `false`"


def test_a_space_whose_domains_all_have_errors_is_not_called_empty() -> None:
    (d,) = diagnostics(BASE + 'space { lr = loguniform("a", 1e-2) }\nobjective minimize val_loss\nsearch optuna\n')
    assert d.message == '`lower` of `loguniform` must be a number, not the string "a"'
    (w,) = warnings(BASE + "space { epochs = 2 }\nobjective minimize val_loss\nsearch optuna\n")
    assert w.message == "`search optuna` has nothing to search: `space` has no parameters"


def test_cmaes_warns_about_parameters_it_leaves_to_random_sampling() -> None:
    space = ('space { lr = loguniform(1e-4, 1e-1), bs = choice(32, 64), '
             'm = uniform(0, 1) if bs == 32 }\nobjective minimize val_loss\n')
    ws = warnings(BASE + space + "search optuna { sampler = cmaes }\n")
    assert [(w.code, where(w)) for w in ws if "cmaes" in w.message] == [("HP802", (3, 43)), ("HP802", (3, 63))]
    assert ws[0].message == ("optuna's `cmaes` sampler picks `bs` at random: CMA-ES models only numeric "
                             "parameters that every trial has")
    assert not [w for w in warnings(BASE + space + "search optuna { sampler = tpe }\n") if "cmaes" in w.message]


def test_gp_and_nsga2_warn_about_conditional_parameters_they_leave_to_random_sampling() -> None:
    """Optuna's GPSampler and NSGAIISampler model the intersection search space: a
    parameter some trials lack goes to their random sampler, every trial, with no word."""
    space = ('space { lr = loguniform(1e-4, 1e-1), bs = choice(32, 64), '
             'm = uniform(0, 1) if bs == 32 }\nobjective minimize val_loss\n')
    for sampler in ("gp", "nsga2"):
        ws = [w for w in warnings(BASE + space + f"search optuna {{ sampler = {sampler} }}\n") if w.code == "HP802"]
        assert [where(w) for w in ws] == [(3, 63)], sampler  # `bs`, a choice, they model
        assert ws[0].message == (f"optuna's `{sampler}` sampler picks `m` at random: it models only parameters "
                                 "that every trial has")
        assert ws[0].help == "use `sampler = tpe`, which models conditional parameters too"


def test_a_searcher_whose_random_start_up_takes_every_trial_is_warned_about() -> None:
    """TPE's first 10 trials (NSGA-II's first generation of 50, hyperopt's first 20) are
    sampled at random: a study of fewer trials was a random search under a model's name."""
    head = BASE + "space { lr = loguniform(1e-4, 1e-1) }\nobjective minimize val_loss\n"
    (w,) = warnings(head + "trials { num_samples = 6 }\nsearch optuna { sampler = tpe }\n")
    assert (w.code, where(w)) == ("HP802", (6, 8))
    assert w.message == ("optuna's `tpe` sampler never uses its model: the study's 6 trials are all within "
                         "its 10 random start-up trials (`n_startup_trials`)")
    assert w.help == "lower `n_startup_trials` to 3, or run more than 10 trials"
    (w,) = warnings(head + "trials { num_samples = 8 }\nsearch optuna { sampler = nsga2, population_size = 8 }\n")
    assert (where(w), w.message) == ((6, 34), "optuna's `nsga2` sampler never uses its model: the study's 8 "
                                              "trials are all within its 8 random start-up trials (`population_size`)")
    assert warnings(head + "trials { num_samples = 6 }\nsearch optuna { n_startup_trials = 3 }\n") == []
    assert warnings(head + "trials { num_samples = 11 }\nsearch optuna\n") == []
    assert warnings(head + "search optuna\n") == []  # one trial: nothing to search, whatever the searcher


def test_a_checkpoint_score_attribute_nobody_reports_is_warned_about() -> None:
    # Ray logs an error at every checkpoint and ranks them all -inf: `keep` keeps arbitrary ones
    obj = "objective minimize val_loss\n"
    (w,) = warnings(BASE + obj + "checkpoint { score_attribute = val_los, score_order = min }\n")
    assert (w.code, where(w)) == ("HP801", (4, 14))
    assert w.message == "`score_attribute` `val_los` is not reported by hpoc's default train loop or by Tune"
    assert w.help == "did you mean `val_loss`?"
    d = one_error(BASE + obj + "checkpoint { score_attribute = val_los }\n")
    assert d.help == "did you mean `val_loss`? otherwise add `score_order = min` or `max`"
    assert not warnings(BASE + obj + "checkpoint { score_attribute = val_accuracy, score_order = max }\n")
    assert not warnings(BASE + obj + "checkpoint { score_attribute = training_iteration, score_order = max }\n")


def test_a_score_attribute_a_loop_of_its_own_does_not_report(tmp_path) -> None:
    """As for time_attr: a trainer with a loop of its own reports only what it passes to
    `checkpoint_and_report`, not hpoc's default loop metrics (`train_loss`)."""
    (tmp_path / "trainer.py").write_text(
        "from hpoc import Trainer\n\nclass T(Trainer):\n    def train(self):\n"
        "        self.checkpoint_and_report(1, tuning_metrics={'val_accuracy': 0.5})\n", encoding="utf-8")

    def said(attr):
        text = _sched("epochs = 10", "num_samples = 2", "scheduler fifo",
                      f"checkpoint {{ score_attribute = {attr}, score_order = min }}\n")
        return [d for d in diagnostics(text, str(tmp_path)) if d.severity == "warning"]

    (w,) = said("train_loss")
    assert (w.code, where(w), w.message) == (
        "HP801", (7, 14), "`score_attribute` `train_loss` is not reported to Tune by the trainer, nor added by Tune")
    assert w.help == "add `train_loss` to the metrics the trainer passes to `checkpoint_and_report`"
    for attr in ("val_accuracy", "training_iteration"):
        assert not said(attr), attr


def test_pb2_bounds_on_a_choice_are_refused() -> None:
    # PB2 picks any number between the bounds: 37.4 for a batch size of 16, 32 or 64
    d = one_error(BASE + "space { lr = loguniform(1e-3, 1e-1), bs = choice(16, 32, 64) }\n"
                  "objective minimize val_loss\ntrials { num_samples = 4 }\n"
                  "scheduler pb2 { hyperparam_bounds { lr = [1e-3, 1e-1], bs = [16, 64] } }\n")
    assert (d.code, where(d)) == ("HP401", (6, 56))
    assert d.message == "`scheduler pb2` picks numbers between bounds, but `bs` is a `choice` parameter"
    assert d.help == "give `bs` a numeric domain (`qrandint`, `uniform`, ...), or let `scheduler pbt` mutate it"


def test_a_score_order_against_the_objective_without_a_score_attribute_is_refused() -> None:
    """`checkpoint { score_order = max }` ranked the minimised `val_loss` by max: `keep`
    kept the worst checkpoints, without a word; under PBT, which keeps the latest, it was dropped
    unsaid. The objective's own order is fine."""
    d = one_error(BASE + "objective minimize val_loss\ncheckpoint { score_order = max }\n")
    assert (d.code, where(d), d.message) == (
        "HP204", (4, 14), "`score_order = max` ranks checkpoints by `val_loss`, the objective metric, which is "
                          "minimised: the worst ones would be kept")
    plan = plan_of(BASE + "objective minimize val_loss\ncheckpoint { score_order = min }\n")
    assert (plan["checkpoint"]["score_attribute"], plan["checkpoint"]["score_order"]) == ("val_loss", "min")
    d = one_error(BASE + "space { lr = uniform(0, 1) }\nobjective minimize val_loss\ntrials { num_samples = 4 }\n"
                  "scheduler pbt\ncheckpoint { score_order = min }\n")  # the latest are kept: no order
    assert (where(d), d.message) == ((7, 14), "`score_order` needs `score_attribute`: under `scheduler pbt` the "
                                             "latest checkpoints are kept, not ranked")


def test_a_resource_finer_than_ray_counts_is_refused() -> None:
    """Ray refuses an actor of 0.00005 CPU ("cannot go beyond 0.0001"): every trial would fail."""
    d = one_error(BASE + "resources { cpus_per_worker = 0.00005 }\n")
    assert (d.code, where(d), d.message) == (
        "HP501", (3, 13), "`cpus_per_worker` must be 0.0001 or more: Ray counts CPUs and GPUs in steps of 0.0001 "
                          "(got 5e-05)")
    assert one_error(BASE + "resources { gpus_per_worker = 0.00001 }\n").message.startswith("`gpus_per_worker` must")
    assert plan_of(BASE + "resources { cpus_per_worker = 0.0001 }\n")["resources"]["cpus_per_worker"] == 0.0001


def test_ax_parameter_constraints_name_numeric_parameters_of_the_space() -> None:
    """Ax fails the study building its search space from a constraint on an unknown name."""
    head = BASE + 'space { lr = uniform(0.001, 0.1), wd = uniform(0, 0.1), act = choice("relu", "tanh") }\n' \
                  "objective minimize val_loss\n"
    d = one_error(head + 'search ax { parameter_constraints = ["lr + 1e-3 <= 0.1", "lr + dropout <= 1"] }\n')
    assert (d.code, where(d), d.message, d.help) == (
        "HP201", (5, 58), '`parameter_constraints` "lr + dropout <= 1" names `dropout`, which is not searched in '
                          "`space`", "constrain `lr` or `wd`")
    d = one_error(head + 'search ax { parameter_constraints = ["act <= 1"] }\n')
    assert (d.code, d.message) == ("HP304", '`parameter_constraints` "act <= 1" names `act`, a `choice` parameter: '
                                            "Ax constrains numeric parameters only")
    assert plan_of(head + 'search ax { parameter_constraints = ["2*lr + wd <= 0.15"] }\n')


def test_pb2_bounds_on_a_constant_that_is_not_a_float_are_refused() -> None:
    """`epochs = 8` under PB2 bounds reached the trainer as 5.37: a constant has no integer
    domain for PB2's pick to be kept whole on. A float constant is PB2's to move."""
    head = BASE + "space { lr = loguniform(1e-3, 1e-1), epochs = 8, wd = 0.01 }\nobjective minimize val_loss\n"
    d = one_error(head + "scheduler pb2 { hyperparam_bounds { lr = [1e-3, 1e-1], epochs = [1, 8] } }\n")
    assert (d.code, where(d)) == ("HP401", (5, 56))
    assert d.message == "`scheduler pb2` picks fractional numbers between bounds, but `epochs` is the constant 8"
    assert d.help == "give `epochs` a domain in `space` (`qrandint(...)` keeps it whole), or let `scheduler pbt` mutate it"
    plan = plan_of(head + "scheduler pb2 { hyperparam_bounds { wd = [0.0, 0.1] } }\n")
    assert plan["scheduler"]["options"]["hyperparam_bounds"] == {"wd": [0.0, 0.1]}


def test_population_quantile_fraction_of_zero_exploits_nothing() -> None:
    # Ray puts ceil(n * 0) = 0 trials in each quantile: nobody exploits, nobody is copied
    head = BASE + "space { lr = uniform(0.001, 0.1), epochs = 6 }\nobjective minimize val_loss\ntrials { num_samples = 8 }\n"
    (w,) = warnings(head + "scheduler pbt { quantile_fraction = 0 }\n")
    assert (w.code, where(w)) == ("HP805", (6, 17))
    assert w.message == ("`scheduler pbt` never exploits a trial: with `quantile_fraction = 0` no trial is in "
                         "the bottom quantile")
    assert w.help == "raise `quantile_fraction` above 0 (Ray's default is 0.25, at most 0.5)"
    (w,) = warnings(head + "scheduler pb2 { quantile_fraction = 0.0 }\n")
    assert w.code == "HP805"
    assert not warnings(head + "scheduler pbt { quantile_fraction = 0.01 }\n")


def test_ray_and_trainer_words_point_to_the_hpo_key_and_section() -> None:
    obj = "objective minimize val_loss\n"
    assert one_error(BASE + obj + "search optuna { n_trials = 4 }\n").help == "write `num_samples` in `trials`"
    assert one_error(BASE + "checkpoint { num_to_keep = 2 }\n").help == "did you mean `keep`?"
    assert one_error(BASE + "checkpoint { checkpoint_frequency = 2 }\n").help == "did you mean `every`?"
    assert one_error(BASE + "trials { max_concurrent_trials = 2 }\n").help == "did you mean `max_concurrent`?"
    d = one_error(BASE + "training { epochs = 3 }\n")
    assert d.help == "values the trainer reads are constants in `space`: `space { epochs = ... }`"
    assert one_error(BASE + "trials { batch_size = 3 }\n").help.startswith("values the trainer reads")


def test_a_broken_objective_is_reported_once_not_again_by_search_and_scheduler() -> None:
    rest = "search optuna\nscheduler asha\n"
    (d,) = errors(BASE + 'objective { minimize "" }\n' + rest)
    assert d.message == "metric names must be non-empty and on one line"
    (d,) = errors(BASE + "objective {}\n" + rest)
    assert d.message == "`objective` lists no metric"
    assert [d.message for d in errors(BASE + rest)] == [
        "`search optuna` needs an objective to optimise", "`scheduler asha` needs an objective to compare trials"]


def test_deepspeed_settings_the_config_file_overrides_are_warned_about(tmp_path) -> None:
    # the runtime fills in only what the file leaves out (or sets to "auto")
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 1}, "bf16": {"enabled": true}}', encoding="utf-8")
    text = BASE + ('resources { gpus_per_worker = 1, deepspeed { config = "ds.json", zero_stage = 3, '
                   'precision = fp16 } }\n')
    ws = [d for d in diagnostics(text, str(tmp_path)) if d.code == "HP804"]
    assert [(where(w), w.message) for w in ws] == [
        ((3, 66), 'the DeepSpeed config "ds.json" sets `zero_optimization`: `zero_stage = 3` is not used'),
        ((3, 82), 'the DeepSpeed config "ds.json" sets `bf16`: `precision = fp16` is not used')]
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": "auto"}}', encoding="utf-8")
    assert not [d for d in diagnostics(text, str(tmp_path)) if d.code == "HP804"]
    # an "auto" elsewhere in the section does not make the file's stage the spec's
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 1, "reduce_bucket_size": "auto"}}',
                                      encoding="utf-8")
    (w,) = [d for d in diagnostics(text, str(tmp_path)) if d.code == "HP804"]
    assert w.message == 'the DeepSpeed config "ds.json" sets `zero_optimization`: `zero_stage = 3` is not used'
    # a section that agrees with the spec overrides nothing: bf16 off, fp16 on (the runtime's)
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3}, "bf16": {"enabled": false}}',
                                      encoding="utf-8")
    assert not [d for d in diagnostics(text, str(tmp_path)) if d.code == "HP804"]


def test_a_study_block_without_a_name_is_told_the_one_line_form() -> None:
    ds = errors('study { name = "x" }\npipeline { trainer = trainer:T }\n')
    assert [(d.message, d.help) for d in ds] == [
        ("`study` needs a name", 'write `study "my-study"`'),
        ("`study` takes only a name", 'write `study "name"`')]


def test_a_pipeline_module_that_does_not_parse_is_a_warning(tmp_path) -> None:
    """`hpoc check` said "valid" of a study whose trainer.py has a syntax error: every run
    then failed at its first import. A warning (the Python that runs it may be newer)."""
    (tmp_path / "trainer.py").write_text("import hpoc\nclass T(hpoc.Trainer)\n    pass\n")
    (d,) = diagnostics(BASE, str(tmp_path))
    assert (d.severity, d.code, where(d), d.message) == (
        "warning", "HP803", (2, 22), "trainer: `trainer` (trainer.py:2) has a syntax error: expected ':'")
    assert d.help == "importing it would fail in every run; `python -m py_compile trainer.py` shows where"


def test_a_module_that_parses_but_does_not_compile_is_a_warning(tmp_path) -> None:
    """An import added above `from __future__ import annotations` parses (ast.parse) but
    Python refuses to compile it: the check said "valid", and the SLURM job brought Ray up
    before its trials failed to import the trainer."""
    (tmp_path / "trainer.py").write_text("import os\nfrom __future__ import annotations\nimport hpoc\n"
                                         "class T(hpoc.Trainer):\n    pass\n")
    (d,) = diagnostics(BASE, str(tmp_path))
    assert (d.severity, d.code, d.message) == (
        "warning", "HP803", "trainer: `trainer` (trainer.py:2) has a syntax error: "
                            "from __future__ imports must occur at the beginning of the file")
    # what the compiler only warns of is the module's business: not printed by the check
    (tmp_path / "trainer.py").write_text('import hpoc\nif hpoc is "a": pass\nclass T(hpoc.Trainer):\n    pass\n')
    import warnings as py_warnings  # `warnings` here is hpo_util's

    with py_warnings.catch_warnings(record=True) as said:
        py_warnings.simplefilter("always")
        assert not [d for d in diagnostics(BASE, str(tmp_path)) if "syntax" in d.message]
    assert [w for w in said if issubclass(w.category, SyntaxWarning)] == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's parser raises ValueError for a NUL")
def test_a_syntax_error_without_a_line_names_only_the_file(tmp_path) -> None:
    """A NUL byte has no line of its own: not "(trainer.py:None)"."""
    (tmp_path / "trainer.py").write_text("import hpoc\n\0\n")
    (d,) = diagnostics(BASE, str(tmp_path))
    assert d.message == ("trainer: `trainer` (trainer.py) has a syntax error: source code string "
                         "cannot contain null bytes")


@pytest.mark.parametrize("content, message", [
    ('{"zero_optimization": {"stage": 4}}',
     'the DeepSpeed config "ds.json" sets `zero_optimization.stage` to 4: ZeRO has stages 0 to 3 (or "auto")'),
    ('{"zero_optimization": {"stage": "2"}}',
     'the DeepSpeed config "ds.json" sets `zero_optimization.stage` to "2": ZeRO has stages 0 to 3 (or "auto")'),
    ('{"zero_optimization": {"stage": 2}', 'the DeepSpeed config "ds.json" is not JSON: ds.json:1:35: '),
    ('[1]', 'the DeepSpeed config "ds.json" is not a JSON object'),
    # a section given as a bare value: DeepSpeed's config models take `**section`
    ('{"fp16": true}', 'the DeepSpeed config "ds.json" sets `fp16` to true: DeepSpeed reads it as a section'),
    ('{"zero_optimization": 2}', 'the DeepSpeed config "ds.json" sets `zero_optimization` to 2: '),
    ('{"optimizer": "AdamW"}', 'the DeepSpeed config "ds.json" sets `optimizer` to "AdamW": '),
    # DeepSpeed reads "false" as false; the trial's precision took any string for on
    ('{"bf16": {"enabled": "false"}}', 'the DeepSpeed config "ds.json" sets `bf16.enabled` to "false": write true, '),
    ('{"fp16": {"enabled": "True"}}', 'the DeepSpeed config "ds.json" sets `fp16.enabled` to "True": '),
])  # fmt: skip
def test_a_deepspeed_config_file_every_trial_would_fail_on_is_refused(tmp_path, content, message) -> None:
    """`hpoc check` said "valid"; DeepSpeed (or reading the file) then failed every trial,
    each after Ray and its workers had started."""
    (tmp_path / "ds.json").write_text(content, encoding="utf-8")
    text = BASE + 'resources { workers = 2, deepspeed { config = "ds.json" } }\n'
    (d,) = [d for d in diagnostics(text, str(tmp_path)) if d.severity == "error"]
    assert (d.code, where(d)) == ("HP204", (3, 38)) and d.message.startswith(message)  # at `config`
    for fine in ('{"zero_optimization": {"stage": 3}}', '{"zero_optimization": {"stage": "auto"}}', "{}",
                 '{"zero_optimization": true}', '{"zero_optimization": "auto", "bf16": "auto"}'):
        (tmp_path / "ds.json").write_text(fine, encoding="utf-8")
        assert not [d for d in diagnostics(text, str(tmp_path)) if d.severity == "error"]


def test_pipeline_steps_are_checked_against_their_module_source_never_imported(tmp_path) -> None:
    """docs/language.md's pipeline section: what `hpoc check` finds in a step's source."""
    (tmp_path / "data.py").write_text(
        "open(__file__ + '.imported', 'w').close()\n\n"
        "class Getter:\n    def __init__(self, mode: str, ratio: float = 0.9):\n        pass\n\n"
        "    def execute(self):\n        return [1], [2]\n")
    spec = 'study "t"\npipeline {{ getter = {}\n  trainer = t:T }}\n'
    cases = {"data:Getr(mode = train)": "getter: `data` (data.py) defines no `Getr`",
             "data:Getter(mode = train, seed = 1)": "getter: `Getter` (data.py) takes no argument `seed`",
             "data:Getter(mode = train, ratio = ninety)":
                 "getter: `Getter` (data.py) takes `ratio: float`, not the string \"ninety\""}  # fmt: skip
    for step, message in cases.items():
        (d,) = [d for d in diagnostics(spec.format(step), str(tmp_path)) if d.severity == "error"]
        assert (d.code, d.message) == ("HP204", message), step
    assert plan_of(spec.format("data:Getter(mode = train)"), str(tmp_path))["pipeline"]["getter"]["args"] == {"mode": "train"}
    assert not (tmp_path / "data.py.imported").exists()


def test_a_step_written_as_a_function_is_refused_at_check_with_how_to_write_a_class(tmp_path) -> None:
    """`getter = data:load` with `def load(): return train, val` passed `hpoc check`; the
    run then stopped after the job had waited in the queue: hpoc builds a step by calling
    its target and runs the `execute()` of what that returns (docs/trainer.md)."""
    (tmp_path / "data.py").write_text(
        "def load(root='d'):\n    return [1], [2]\n\n"
        "def split(data, ratio=0.9):\n    return data\n\n"
        "def fit(config):\n    return 1\n\n"
        "class Getter:\n    def execute(self):\n        return [1], [2]\n\n"
        "def make(root='d'):\n    return Getter()\n")
    spec = 'study "t"\npipeline {{ {}\n  trainer = t:T }}\n'
    cases = {"getter = data:load(root = \"x\")": ("getter", "load", 1),
             "getter = data:Getter, splitter = data:split(ratio = 0.8)": ("splitter", "split", 4)}
    for step, (role, name, line) in cases.items():
        (d,) = [d for d in diagnostics(spec.format(step), str(tmp_path)) if d.severity == "error"]
        assert d.code == "HP204", step
        assert d.message.startswith(f"{role}: `{name}` (data.py:{line}) is a function, not a class"), d.message
        assert "`execute(self" in d.help and "docs/trainer.md" in d.help, d.help
    (d,) = [d for d in diagnostics('study "t"\npipeline { getter = data:Getter\n  trainer = data:fit }\n',
                                   str(tmp_path)) if d.severity == "error"]
    assert d.message.startswith("trainer: `fit` (data.py:7) is a function, not a class"), d.message
    assert "hpoc.Trainer" in d.help
    # a function that builds a step and returns it is how the runtime builds steps anyway
    assert not [d for d in diagnostics(spec.format("getter = data:make"), str(tmp_path)) if d.severity == "error"]


def test_a_step_class_without_execute_is_refused_at_check(tmp_path) -> None:
    """A getter class whose method is `load()`, not `execute()`, passed `hpoc check`; the run
    stopped on it ("has neither `execute()` nor `__call__`") after the queue."""
    (tmp_path / "data.py").write_text(
        "class Getter:\n    def __init__(self, root='d'):\n        self.root = root\n\n"
        "    def load(self):\n        return [1], [2]\n\n"
        "class Base:\n    def execute(self):\n        return [1], [2]\n\n"
        "class Sub(Base):\n    pass\n\n"
        "class Called:\n    def __call__(self, data):\n        return data\n\n"
        "import somewhere\n\nclass Elsewhere(somewhere.Step):\n    pass\n")
    spec = 'study "t"\npipeline {{ {}\n  trainer = t:T }}\n'
    (d,) = [d for d in diagnostics(spec.format("getter = data:Getter"), str(tmp_path)) if d.severity == "error"]
    assert (d.code, d.message) == ("HP204", "getter: `Getter` (data.py:1) has no `execute()`: hpoc builds the "
                                            "step, then runs its `execute()`"), d.message
    assert d.help == "rename `load` (data.py:5) to `execute`", d.help
    for fine in ("getter = data:Sub", "getter = data:Sub, splitter = data:Called", "getter = data:Elsewhere"):
        assert not [d for d in diagnostics(spec.format(fine), str(tmp_path)) if d.severity == "error"], fine


def test_a_trainer_whose_init_needs_the_config_is_refused_unless_itwinai_style(tmp_path) -> None:
    """`def __init__(self, config)` on an hpoc.Trainer was passed by `hpoc check` (the itwinai
    compat trainer is built with a config), then every trial failed building it."""
    init = "    def __init__(self, config):\n        super().__init__()\n\n    def create_model(self, config):\n        return 1\n"
    (tmp_path / "t.py").write_text(
        "import hpoc\nfrom hpoc.compat.itwinai import RayTorchTrainer\n\n"
        f"class T(hpoc.Trainer):\n{init}\nclass Base(hpoc.Trainer):\n    pass\n\n"
        f"class Sub(Base):\n{init}\nclass Compat(RayTorchTrainer):\n{init}")
    spec = 'study "t"\npipeline { trainer = t:%s, getter = d:G }\nspace { epochs = 1 }\n'
    for name in ("T", "Sub"):
        (d,) = [d for d in diagnostics(spec % name, str(tmp_path)) if d.severity == "error"]
        assert (d.code, d.message) == ("HP204", f"trainer: `{name}` (t.py) needs `config`: hpoc builds it "
                                                "with the step's arguments only"), name
        assert "self.config" in d.help
    assert not [d for d in diagnostics(spec % "Compat", str(tmp_path)) if d.severity == "error"]


def _trainer_module(tmp_path, model: str, more: str = "") -> None:
    """t.py: a trainer `T` whose `create_model` returns `model`, then `more` of its body."""
    (tmp_path / "t.py").write_text("import hpoc\n\nclass T(hpoc.Trainer):\n    def create_model(self, config):\n"
                                   f"        return {model}\n" + more)


def test_a_conditional_parameter_read_by_subscript_is_warned(tmp_path) -> None:
    """`config["dropout"]` with `dropout = uniform(...) if reg == "dropout"`: every trial
    without it failed with KeyError: 'dropout' (retried first), after `hpoc check` said valid."""
    _trainer_module(tmp_path, "make(config['width'], config['dropout'])")
    spec = ('study "t"\npipeline { trainer = t:T }\nspace {\n  width = choice(8, 16)\n'
            '  reg = choice("none", "dropout")\n  dropout = uniform(0.1, 0.5) if reg == "dropout"\n}\n')
    (d,) = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP811"]
    assert d.severity == "warning" and where(d) == (2, 12)  # the `trainer` setting, as HP811 of a key not in `space`
    assert d.message == ('the trainer reads `config["dropout"]` (t.py:5), which trials have only when '
                         '`reg` is "dropout": the others fail with a KeyError')
    assert d.help == '`config.get("dropout", default)`, or test `"dropout" in config` first'
    # read with a guard (or by .get) somewhere in the module: it knows
    for guarded in ("config['dropout'] if 'dropout' in config else 0.0", "config.get('dropout', 0.0)"):
        _trainer_module(tmp_path, f"make(config['width'], {guarded})")
        assert not [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP811"], guarded


def test_a_grouped_parameter_read_by_its_last_name_is_told_how_to_read_it(tmp_path) -> None:
    """`config["lr"]` with `optimizer { lr = ... }` in `space`: a trial's config nests it,
    `config["optimizer"]["lr"]`, and every trial failed with KeyError: 'lr'. The help said
    `add lr to space`, which a user who has it there could not act on; a dotted key
    (`config["optimizer.lr"]`) is told the same."""
    spec = ('study "t"\npipeline { trainer = t:T }\nspace {\n  hidden = choice(8, 16)\n'
            '  optimizer { lr = loguniform(1e-4, 1e-2) }\n}\n')
    for read in ("config['lr']", "config['optimizer.lr']"):
        _trainer_module(tmp_path, f"make(config['hidden'], {read})")
        (d,) = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP811"]
        assert d.help == ('`space` sets `optimizer.lr`, which a trial gets nested: read '
                          '`config["optimizer"]["lr"]`'), read
    # a name of its own still gets the usual help
    _trainer_module(tmp_path, "make(config['hidden'], config['dropout'])")
    (d,) = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP811"]
    assert d.help == "add `dropout` to `space`"


def test_a_searched_parameter_an_hpoc_trainer_never_names_is_warned(tmp_path) -> None:
    """`act` and `depth` searched, a trainer whose hooks read `config["hidden"]` alone: every
    trial trained alike whatever they were, and the results ranked trials by them; `hpoc
    check` said valid. What hpoc's loop and default optimizer read are not warned of, nor is
    anything while the module hands its config on whole."""
    spec = ('study "t"\npipeline { trainer = t:T }\nspace {\n  hidden = choice(8, 16)\n'
            '  act = choice(relu, tanh)\n  depth = randint(1, 4)\n  lr = loguniform(1e-4, 1e-2)\n'
            '  optimizer = choice(adam, sgd)\n  batch_size = choice(16, 32)\n  epochs = 2\n}\n')
    _trainer_module(tmp_path, "make(config['hidden'])")
    found = [(d.severity, d.message, where(d)[0], d.help) for d in diagnostics(spec, str(tmp_path))
             if d.code == "HP816"]
    assert found == [("warning", f"the trainer never reads the searched `{name}`: its module (t.py) never "
                      "names it, so every trial trains alike whatever its value", line,
                      f'read it in the trainer (`config["{name}"]`), or remove it')
                     for name, line in (("act", 5), ("depth", 6))]
    for whole in ("make(**config)", "make(config)", "make(config['hidden'], config['act'], config['depth'])"):
        _trainer_module(tmp_path, whole)
        assert not [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"], whole
    # a condition's parameter is read through the presence of the one it conditions
    conditional = spec.replace("  epochs = 2\n", '  reg = choice("none", "dropout")\n'
                               '  dropout = uniform(0.1, 0.5) if reg == "dropout"\n  epochs = 2\n')
    _trainer_module(tmp_path, "make(config['hidden'], config['act'], config['depth'], config.get('dropout'))")
    assert not [d for d in diagnostics(conditional, str(tmp_path)) if d.code == "HP816"]


def test_a_windows_path_s_backslash_escape_is_named_in_the_help() -> None:
    """`path = "C:\\results"`: `\\r` is a string escape, a carriage return, and the error
    said only "must be one line without control characters", with no fix."""
    d = one_error(BASE + 'storage { path = "C:\\results" }\n')
    assert (where(d), d.message) == ((3, 18), "`path` must be one line without control characters")
    assert d.help == ("`\\r` in a string is an escape (a carriage return): write a path with `/`, "
                      "or each `\\` as `\\\\`")
    d = one_error(BASE + 'storage { path = "res\\tmp" }\n')
    assert d.help.startswith("`\\t` in a string is an escape (a tab)")
    assert one_error(BASE + 'storage { path = "res\tmp" }\n').help is None  # a tab typed: no escape


def test_val_accuracy_under_a_regression_trainer_is_warned(tmp_path) -> None:
    """`objective maximize val_accuracy` with `task = "regression"` (a class attribute or the
    trainer's argument): hpoc's loop scores accuracy for classification only, so every trial
    failed at its first report, after `hpoc check` said valid."""
    spec = ('study "t"\npipeline { trainer = t:T%s, getter = d:G }\nspace { epochs = 2 }\n'
            "objective maximize val_accuracy\n")
    _trainer_module(tmp_path, "make(config)", '    task = "regression"\n')
    for args, dn in (("", ""), ('(task = "regression")', "")):
        if args:
            _trainer_module(tmp_path, "make(config)")
        (d,) = [d for d in diagnostics(spec % args, str(tmp_path)) if d.code == "HP801"]
        assert (d.severity, where(d), d.message, d.help) == (
            "warning", (4, 20), "metric `val_accuracy` is not reported for a regression trainer "
            '(`task = "regression"`): hpoc\'s loop scores accuracy for classification only',
            "use `objective minimize val_loss`, or report a metric of your own from `validation_step`"), args
    # classification, or a module that reports its own `val_accuracy`: nothing said
    _trainer_module(tmp_path, "make(config)")
    assert not [d for d in diagnostics(spec % "", str(tmp_path)) if d.code == "HP801"]
    _trainer_module(tmp_path, "make(config)", '    task = "regression"\n\n    def validation_step(self, batch):\n'
                    '        return {"loss": 0, "val_accuracy": 1}\n')
    assert not [d for d in diagnostics(spec % "", str(tmp_path)) if d.code == "HP801"]


def _ds_diagnostics(tmp_path, content: str, resources: str = "workers = 2", extra: str = "") -> list:
    (tmp_path / "ds.json").write_text(content, encoding="utf-8")
    text = BASE + extra + f'resources {{ {resources}, gpus_per_worker = 1, deepspeed {{ config = "ds.json" }} }}\n'
    return [d for d in diagnostics(text, str(tmp_path)) if "DeepSpeed config" in d.message]


@pytest.mark.parametrize("content, space, severity, message", [
    # every trial: 32 × 1 × 2 is not 48 (hpoc gave the accumulation 1)
    ('{"train_batch_size": 48, "gradient_accumulation_steps": 1}', "batch_size = 32",
     "error", "a micro-batch of 32 × 1 accumulation steps × 2 workers is 64"),
    ('{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 1}',
     "batch_size = 16",
     "error", "a micro-batch of 16 × 1 accumulation steps × 2 workers is 32"),
    # DeepSpeed derives the accumulation: 96 // (32 × 2) = 1, and 64 is not 96
    ('{"train_batch_size": 96}', "batch_size = choice(32, 64)", "error",
     "a micro-batch of 32 × 1 accumulation steps × 2 workers is 64"),
    # only some searched batch sizes fail
    ('{"train_batch_size": 128}', "batch_size = choice(16, 32, 48)", "warning",
     "trials whose `batch_size` is 48 fail (a micro-batch of 48 × 1 accumulation steps × 2 workers is 96)"),
    ('{"train_batch_size": 0}', "", "error", "sets `train_batch_size` to 0: DeepSpeed needs a whole number"),
    ('{"train_batch_size": 3, "gradient_accumulation_steps": 1}', "", "error",  # the loop's default 64
     "a micro-batch of 64 × 1 accumulation steps × 2 workers is 128"),
    # DeepSpeed's getting-started config: the trainer tells DeepSpeed the loop's 64, not 8 // 2 workers
    ('{"train_batch_size": 8}', "", "error", "a micro-batch of 64 × 2 workers is already 128"),
])  # fmt: skip
def test_a_deepspeed_train_batch_size_that_does_not_split_is_said_at_check(tmp_path, content, space, severity,
                                                                          message) -> None:
    """DeepSpeed asserts train_batch_size = micro-batch × accumulation × workers in every trial,
    after Ray and the workers started: `hpoc check` said "valid"."""
    extra = f"space {{ {space} }}\n" if space else ""
    (d,) = [d for d in _ds_diagnostics(tmp_path, content, extra=extra) if d.severity == severity]
    assert where(d) == (4 if space else 3, 59) and message in d.message, d.render()
    for fine in ('{"train_batch_size": 128}', '{"train_batch_size": "auto", "gradient_accumulation_steps": 4}'):
        assert not _ds_diagnostics(tmp_path, fine, extra="space { batch_size = choice(16, 32, 64) }\n")


def test_a_deepspeed_config_enabling_bf16_and_fp16_is_refused(tmp_path) -> None:
    (d,) = _ds_diagnostics(tmp_path, '{"bf16": {"enabled": true}, "fp16": {"enabled": true}}')
    assert (d.severity, d.code, where(d)) == ("error", "HP204", (3, 59))
    assert "enables both `bf16` and `fp16`" in d.message


def test_hf_style_auto_values_hpoc_does_not_fill_in_are_refused(tmp_path) -> None:
    """HF's ds_config_zero3.json leaves `gradient_clipping` and the optimizer's and scheduler's
    values to "auto" for the HF Trainer: hpoc fills in what the trial gives (the learning rate,
    weight decay, ...) and refuses the rest, which DeepSpeed took for a number in every trial."""
    hf = {"bf16": {"enabled": "auto"}, "train_batch_size": "auto", "gradient_accumulation_steps": "auto",
          "train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto",
          "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"},
          "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": 0.0, "torch_adam": "auto"}},
          "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_num_steps": "auto", "warmup_max_lr": "auto",
                                                            "total_num_steps": "auto"}}}
    (d,) = [d for d in _ds_diagnostics(tmp_path, json.dumps(hf)) if d.severity == "error"]
    assert (d.code, where(d)) == ("HP204", (3, 59))
    assert ("leaves `optimizer.params.torch_adam`, `scheduler.params.warmup_num_steps`, "
            "`scheduler.params.total_num_steps` to \"auto\"") in d.message
    assert "a scheduler counts optimizer steps: epochs × batches per epoch" in d.help
    hf["optimizer"]["params"] = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
    hf["scheduler"] = {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                      "warmup_num_steps": 100}}
    assert not _ds_diagnostics(tmp_path, json.dumps(hf))


def test_hf_style_auto_optimizer_values_take_the_searched_ones(tmp_path) -> None:
    """An `optimizer` section whose `lr` is "auto" trains with the trial's: no HP804 that the
    searched `lr` never reaches training; a `weight_decay` the file sets still overrides."""
    hf = {"optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": 0.01}},
          "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto", "warmup_num_steps": 10}}}
    space = "space { lr = loguniform(1e-4, 1e-2), weight_decay = uniform(0.0, 0.1) }\n"
    (w,) = _ds_diagnostics(tmp_path, json.dumps(hf), extra=space)
    assert w.code == "HP804" and "the searched `weight_decay` never reaches training" in w.message
    hf["optimizer"]["params"]["weight_decay"] = "auto"
    assert not _ds_diagnostics(tmp_path, json.dumps(hf), extra=space)
    pbt = "scheduler pbt { perturbation_interval = 2 }\nobjective minimize val_loss\n"
    (w,) = _ds_diagnostics(tmp_path, json.dumps(hf), extra=space + pbt)  # the scheduler sets the rate every step
    assert w.code == "HP804" and "`pbt`'s mutations of `lr` never reach training" in w.message
    hf["scheduler"]["params"]["warmup_max_lr"] = 0.001  # the warm-up's peak is the file's
    (w,) = _ds_diagnostics(tmp_path, json.dumps(hf), extra=space)
    assert "sets its own `scheduler`: the searched `lr` never reaches training" in w.message


def test_zero_offload_without_an_optimizer_section_and_a_missing_nvme_path_are_warned(tmp_path) -> None:
    zero = {"stage": 3, "offload_optimizer": {"device": "nvme", "nvme_path": str(tmp_path / "nvme")}}
    ws = _ds_diagnostics(tmp_path, json.dumps({"zero_optimization": zero}))
    assert [(w.severity, where(w)) for w in ws] == [("warning", (3, 59))] * 2
    assert 'offloads to NVMe at "' in ws[0].message and "defines no `optimizer`" in ws[1].message
    (tmp_path / "nvme").mkdir()
    ok = {"zero_optimization": zero, "zero_force_ds_cpu_optimizer": False}
    assert not _ds_diagnostics(tmp_path, json.dumps(ok))
    # expanded on each node (the runtime does): a node-local disk's variable may be unset here
    zero["offload_optimizer"]["nvme_path"] = "$HPOC_NODE_LOCAL_DISK/zero"
    assert not _ds_diagnostics(tmp_path, json.dumps(ok))


@pytest.mark.parametrize("zero, message", [
    # DeepSpeed reads `offload_param` under stage 3 only: the parameters stayed on the GPU
    ({"stage": 2, "offload_param": {"device": "cpu"}},
     "offloads the parameters (`offload_param`) under ZeRO stage 2: DeepSpeed offloads them only under stage 3"),
    ({"offload_param": {"device": "cpu"}},  # no stage in the file: hpoc's default, 2
     "offloads the parameters (`offload_param`) under ZeRO stage 2: DeepSpeed offloads them only under stage 3"),
    ({"stage": 0, "offload_optimizer": {"device": "cpu"}},
     "offloads the optimizer (`offload_optimizer`) under ZeRO stage 0: DeepSpeed offloads it only under stages 1 to 3"),
])  # fmt: skip
def test_zero_offload_that_deepspeed_ignores_at_its_stage_is_warned(tmp_path, zero, message) -> None:
    ds = {"zero_optimization": zero, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
    (w,) = _ds_diagnostics(tmp_path, json.dumps(ds))
    assert (w.code, w.message) == ("HP804", f'the DeepSpeed config "ds.json" {message}')
    # parameters offloaded alone under stage 3 (the file's, or the spec's where the file has none) work
    assert not _ds_diagnostics(tmp_path, json.dumps({**ds, "zero_optimization": {**zero, "stage": 3}}))
    (tmp_path / "ds.json").write_text(json.dumps({**ds, "zero_optimization": {"offload_param": {"device": "cpu"}}}))
    text = BASE + 'resources { gpus_per_worker = 1, deepspeed { config = "ds.json", zero_stage = 3 } }\n'
    assert not [d for d in diagnostics(text, str(tmp_path)) if "offload" in d.message]


def test_a_deepspeed_config_path_that_names_no_json_file_is_said_once_and_plainly(tmp_path, monkeypatch) -> None:
    """An empty path got a hint of "results" and a second "does not exist" beside the error;
    a directory "did not exist"; a YAML file was only "not JSON"."""
    monkeypatch.delenv("HPOC_NO_SUCH_DIR", raising=False)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "ds.yaml").write_text("zero_optimization:\n  stage: 2\n", encoding="utf-8")

    def said(config: str) -> list:
        text = BASE + f'resources {{ gpus_per_worker = 1, deepspeed {{ config = "{config}" }} }}\n'
        return diagnostics(text, str(tmp_path))

    (d,) = said("")
    assert (d.severity, d.message, d.help) == ("error", "`config` is empty", 'write a path, e.g. "ds_config.json"')
    (d,) = said("$HPOC_NO_SUCH_DIR/ds.json")
    assert (d.severity, d.message) == ("error", "`config` uses `$HPOC_NO_SUCH_DIR`, which is not set here")
    (d,) = said("cfg")
    assert (d.code, d.severity, d.message) == ("HP204", "error", 'DeepSpeed config "cfg" is a directory: DeepSpeed '
                                               "reads one JSON file")
    (d,) = said("ds.yaml")
    assert d.severity == "error" and d.help == "DeepSpeed reads JSON, not YAML: write the file as JSON"


def test_a_deepspeed_config_enabling_fp16_on_cpu_workers_is_warned(tmp_path) -> None:
    """A GPU config tried on CPU first: the file's fp16 won over hpoc's fp32, and DeepSpeed
    failed every trial with "Type fp16 is not supported on your device"."""
    (tmp_path / "ds.json").write_text('{"fp16": {"enabled": true}}', encoding="utf-8")

    def warned(gpus: int) -> list:
        text = BASE + f'resources {{ strategy = deepspeed, gpus_per_worker = {gpus}, deepspeed {{ config = "ds.json" }} }}\n'
        return [d for d in diagnostics(text, str(tmp_path)) if "DeepSpeed config" in d.message]

    (w,) = warned(0)
    assert (w.code, w.severity, where(w)) == ("HP804", "warning", (3, 68))  # at `config`
    assert w.message.startswith('the DeepSpeed config "ds.json" enables `fp16`, but the trials get no GPU')
    assert not warned(1)
    (tmp_path / "ds.json").write_text('{"fp16": {"enabled": "auto"}, "bf16": {"enabled": true}}', encoding="utf-8")
    assert not warned(0)  # DeepSpeed's CPU accelerator takes bf16


def test_a_deepspeed_config_with_a_key_twice_is_warned(tmp_path) -> None:
    (w,) = _ds_diagnostics(tmp_path, '{"zero_optimization": {"stage": 2, "stage": 3}}')
    assert (w.severity, w.message) == (
        "warning", 'the DeepSpeed config "ds.json" sets `stage` twice in one section: only the last value is used')


def test_a_deepspeed_config_with_comments_and_trailing_commas_is_read_as_deepspeed_reads_it(tmp_path) -> None:
    """DeepSpeed reads its config with hjson (its tutorials' files have comments): `hpoc check`
    refused such a file as "not JSON", and the trials could not read it either."""
    commented = ('{\n  // ZeRO-2, as the tutorial has it\n  "zero_optimization": {"stage": 2, /* not 3 */},\n'
                 '  # hjson\'s comment too\n  "bf16": {"enabled": "auto",},\n}\n')
    assert _ds_diagnostics(tmp_path, commented) == []
    # read, not skipped: what it sets is checked, and an error in it says the file's line and column
    (d,) = _ds_diagnostics(tmp_path, commented.replace('"stage": 2', '"stage": 4'))
    assert d.message.startswith('the DeepSpeed config "ds.json" sets `zero_optimization.stage` to 4')
    (d,) = _ds_diagnostics(tmp_path, commented.replace('"auto",', '"auto" "x",'))
    assert d.severity == "error" and d.message.startswith('the DeepSpeed config "ds.json" is not JSON: ds.json:5:30: ')


def test_a_training_precision_the_deepspeed_config_file_overrides_is_warned_about(tmp_path) -> None:
    """`training { precision = bf16 }` beside a file's `"fp16": {"enabled": true}`: the trials
    ran in fp16, silently."""
    ws = _ds_diagnostics(tmp_path, '{"fp16": {"enabled": true}}', extra="training { precision = bf16 }\n")
    assert [(w.code, where(w), w.message) for w in ws] == [
        ("HP804", (3, 12), 'the DeepSpeed config "ds.json" sets `fp16`: `precision = bf16` is not used')]
    assert not _ds_diagnostics(tmp_path, '{"fp16": {"enabled": "auto"}}', extra="training { precision = bf16 }\n")
    assert not _ds_diagnostics(tmp_path, '{"fp16": {"enabled": true}}', extra="training { precision = fp16 }\n")


@pytest.mark.parametrize("space, batches", [
    ("", "hpoc's default `batch_size` (64)"),
    ("batch_size = choice(16, 32)", "`batch_size` (16, 32)"),
])  # fmt: skip
def test_a_deepspeed_micro_batch_that_is_not_the_trials_batch_is_warned_about(tmp_path, space, batches) -> None:
    """A file's `train_micro_batch_size_per_gpu = 16` is only DeepSpeed's count: hpoc's loop
    trained on batches of 64 (its default), four times the samples per step the file said."""
    extra = f"space {{ {space} }}\n" if space else ""
    (w,) = _ds_diagnostics(tmp_path, '{"train_micro_batch_size_per_gpu": 16, "train_batch_size": 32}', extra=extra)
    assert (w.severity, w.code) == ("warning", "HP804")
    assert w.message == ('the DeepSpeed config "ds.json" sets `train_micro_batch_size_per_gpu` to 16, but the '
                         f"trials train on batches of {batches}: DeepSpeed only counts with it")
    assert not _ds_diagnostics(tmp_path, '{"train_micro_batch_size_per_gpu": 16}', extra="space { batch_size = 16 }\n")
    # no batch_size and no micro-batch: DeepSpeed is told the loop's 64 and splits 256 into 64 × 2 × 2 workers
    assert not _ds_diagnostics(tmp_path, '{"train_batch_size": 256}')


def test_more_trials_than_the_space_has_configurations_is_a_warning() -> None:
    """Six distinct configurations and ten trials: four trials train one again, which no
    message said (a user may have read `num_samples` as "up to")."""
    space = "space {\n  opt = choice(sgd, adam)\n  layers = randint(1, 4)\n}\n"
    (w,) = warnings(BASE + space + "trials { num_samples = 10 }\n")
    assert (w.code, where(w)) == ("HP815", (7, 10))
    assert w.message == ("`num_samples = 10` asks for 10 trials, and the space holds 6 distinct "
                         "configurations: at least 4 trials train a configuration another trial trains")
    assert w.help == ("list the values of `opt` and `layers` as `grid(...)` to train each configuration once "
                      "per `num_samples` (`search random` enumerates a grid), or lower `num_samples` to 6")
    (w,) = warnings(BASE + space + "trials { num_samples = 7 }\nobjective minimize val_loss\n"
                    "search optuna { sampler = random }\n")
    assert w.code == "HP815" and w.help == "lower `num_samples` to 6, or widen the space"
    # conditions count the configurations that exist: 1 (sgd) + 3 momenta (m)
    cond = "space {\n  opt = choice(sgd, m)\n  mom = choice(0.5, 0.9, 0.99) if opt == m\n}\n"
    (w,) = warnings(BASE + cond + "trials { num_samples = 5 }\n")
    assert "holds 4 distinct configurations" in w.message
    for fine in (space + "trials { num_samples = 6 }\n",
                 "space { a = choice(1, 2), b = uniform(0, 1) }\ntrials { num_samples = 10 }\n",
                 # a grid's repetitions are what num_samples means there; the trials' seeds differ
                 "space { a = grid(1, 2) }\ntrials { num_samples = 10 }\nsearch grid\n",
                 "space { a = grid(1, 2) }\ntrials { num_samples = 10 }\n"):
        assert not [w for w in warnings(BASE + fine) if w.code == "HP815"], fine
    # under `search random`, the grid's points count once per repetition
    (w,) = warnings(BASE + "space { a = grid(1, 2, 3), b = choice(x, y) }\ntrials { num_samples = 3 }\n")
    assert w.message.startswith("`num_samples = 3` asks for 9 trials (3 repetitions of the 3-point grid), "
                                "and the space holds 6 distinct configurations")
    # there `num_samples` counts repetitions of the grid: it said "lower `num_samples` to 6", 18 trials
    assert w.help == ("list the values of `b` as `grid(...)` to train each configuration once per `num_samples` "
                      "(`search random` enumerates a grid), or lower `num_samples` to 2")


def test_a_default_loop_with_no_number_of_epochs_is_an_error(tmp_path) -> None:
    """No `epochs` anywhere: `hpoc check` said valid, and the job failed as it started
    (`hpoc run`'s driver refuses it), after its wait in the queue."""
    _trainer_module(tmp_path, "make(config['lr'])")
    spec = 'study "t"\npipeline { trainer = t:T, getter = d:G }\nspace {\n  lr = uniform(0.1, 0.2)\n%s}\n%s'
    (d,) = [d for d in diagnostics(spec % ("", ""), str(tmp_path)) if d.severity == "error"]
    assert (d.code, where(d), d.message) == (
        "HP205", (2, 22), "trainer `t:T` runs hpoc's default loop, and the number of epochs is not set")
    assert d.help == "add `epochs = ...` to `space` (a constant, or searched as a parameter)"
    (d,) = [d for d in diagnostics(spec % ("  data.epochs = 3\n", ""), str(tmp_path)) if d.severity == "error"]
    assert d.notes == ("`data.epochs` is inside a group: the loop reads `epochs` at the top of the config",)
    for fine in (("  epochs = 3\n", ""), ("", "trials { stop = { training_iteration = 3 } }\n"),
                 ("", "objective minimize val_loss\nscheduler asha\n")):  # max_t, in epochs
        assert not [d for d in diagnostics(spec % fine, str(tmp_path)) if d.severity == "error"], fine
    assert not [d for d in diagnostics(spec.replace("t:T", "t:T(epochs = 2)") % ("", ""), str(tmp_path))
                if d.severity == "error"]
    _trainer_module(tmp_path, "make(config['lr'])", "    def train(self):\n        self.report({'a': 1}, epoch=1)\n")
    assert not [d for d in diagnostics(spec % ("", ""), str(tmp_path)) if d.severity == "error"]


def test_a_default_loop_with_no_getter_nor_splitter_is_an_error(tmp_path) -> None:
    """No data for hpoc's loop: `hpoc check` said valid, and the driver refused the study as
    it started, on a cluster after the wait in the queue."""
    _trainer_module(tmp_path, "make(config['lr'])")
    spec = 'study "t"\npipeline {\n  trainer = t:T\n%s}\nspace { lr = uniform(0.1, 0.2), epochs = 2 }\n'
    (d,) = [d for d in diagnostics(spec % "", str(tmp_path)) if d.severity == "error"]
    assert (d.code, where(d), d.message) == (
        "HP205", (3, 13), "trainer `t:T` runs hpoc's default loop, which has no training data: the pipeline has "
                          "no `getter` nor `splitter`")
    assert d.help == ("add `getter = module:Class` to `pipeline` (docs/trainer.md), or load the data in the "
                      "trainer's own `create_dataloaders`")
    for fine in ("  getter = d:G\n", "  splitter = d:S\n"):
        assert not [d for d in diagnostics(spec % fine, str(tmp_path)) if d.severity == "error"], fine
    for own in ("train", "setup", "create_dataloaders"):  # the trainer loads its data itself
        _trainer_module(tmp_path, "make(config['lr'])", f"    def {own}(self):\n        self.report({{'a': 1}})\n")
        assert not [d for d in diagnostics(spec % "", str(tmp_path)) if d.severity == "error"], own


def test_a_setting_written_in_space_is_a_warning_when_the_trainer_never_reads_it(tmp_path) -> None:
    """`space { num_samples = 8, gpus_per_worker = 1 }`: the space takes any name, so the
    study was valid and ran one trial on no GPU, the values handed to a trainer that never
    reads them."""
    _trainer_module(tmp_path, "make(config['width'])", "    def more(self):\n        return self.config['seed']\n")
    spec = ('study "t"\npipeline { trainer = t:T }\nspace {\n  width = choice(8, 16)\n'
            '  num_samples = 8\n  gpus_per_worker = 1\n  precision = choice(bf16, fp32)\n  seed = 3\n}\n')
    found = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"]
    assert [(d.severity, where(d), d.message, d.help) for d in found] == [
        ("warning", (5, 3), "`num_samples` in `space` only reaches the trainer, and its module (t.py) never "
                            "names it: hpoc reads `num_samples` in `trials`",
         "move it: `trials { num_samples = ... }`"),
        ("warning", (6, 3), "`gpus_per_worker` in `space` only reaches the trainer, and its module (t.py) never "
                            "names it: hpoc reads `gpus_per_worker` in `resources`",
         "move it: `resources { gpus_per_worker = ... }`"),
        ("warning", (7, 3), "`precision` in `space` only reaches the trainer, and its module (t.py) never "
                            "names it: hpoc reads `precision` in `training`",
         "move it: `training { precision = ... }`"),
    ]  # `seed` is named by the module: the trainer reads it itself
    # a trainer hpoc cannot read (installed elsewhere) may read anything: nothing said
    assert not [d for d in diagnostics(spec.replace("t:T", "elsewhere:T"), str(tmp_path)) if d.code == "HP816"]


def test_an_optimizer_key_the_default_optimizer_never_reads_is_a_warning(tmp_path) -> None:
    """`optimizer.lrr = loguniform(...)`: hpoc's default optimizer reads `lr`, so every
    trial trained at 1e-3 while the results ranked trials by an `lrr` nothing read."""
    _trainer_module(tmp_path, "make(config['width'])")
    spec = ('study "t"\npipeline { trainer = t:T }\nspace {\n  width = choice(8, 16)\n'
            '  optimizer.name = choice(sgd, adam)\n  optimizer.lrr = loguniform(1e-4, 1e-1)\n'
            '  optimizer.weight_decay = 0.01\n}\n')
    (d,) = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"]
    assert d.severity == "warning" and where(d) == (6, 3)
    assert d.message == ("hpoc's default optimizer does not read `optimizer.lrr`, nor does the trainer's "
                         "module (t.py): every trial trains alike whatever its value")
    assert d.help == ("did you mean `optimizer.lr`? (the default optimizer reads `name`, `lr` or "
                      "`learning_rate`, `momentum` and `weight_decay`)")
    # the trainer builds its own optimizer, or names the key: it reads it
    for own in ("    def create_optimizer(self, model, config):\n        return opt(config)\n",
                "    def create_lr_scheduler(self, optimizer, config):\n"
                "        return warm(optimizer, config['optimizer']['lrr'])\n"):
        _trainer_module(tmp_path, "make(config['width'])", own)
        assert not [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"], own


def test_a_time_budget_of_a_few_bare_seconds_is_a_warning() -> None:
    """`time_budget = 10` read as minutes by its writer is 10 s: the study ended before any
    trial reported, and the check had said valid."""
    (w,) = warnings(BASE + "space { a = uniform(0, 1) }\ntrials { num_samples = 4, time_budget = 10 }\n")
    assert (w.code, where(w)) == ("HP817", (4, 41))
    assert w.message == "`time_budget = 10` is 10 seconds: a bare number is seconds"
    assert w.help == "write the unit: `10m` or `10h` (or `10s`, to keep it)"
    (w,) = warnings(BASE + "space { a = uniform(0, 1) }\ntrials { time_limit = 30 }\n")
    assert (w.code, w.message) == ("HP817", "`time_limit = 30` is 30 seconds: a bare number is seconds")
    for fine in ("time_budget = 10s", "time_budget = 10m", "time_budget = 3600", "time_limit = 00:10:00"):
        assert not warnings(BASE + f"space {{ a = uniform(0, 1) }}\ntrials {{ {fine} }}\n"), fine


def test_a_trainer_argument_nothing_reads_is_a_warning(tmp_path) -> None:
    """`trainer:T(batch_sise = 16)`: hpoc.Trainer keeps any argument in `self.args`, so the
    typo trained at the default batch size of 64 without a word."""
    _trainer_module(tmp_path, "make(config['width'], self.args.get('depth', 2))")
    spec = ('study "t"\npipeline { trainer = t:T(batch_sise = 16, depth = 3, task = "classification") }\n'
            'space { width = choice(8, 16) }\n')
    (d,) = [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"]
    assert d.severity == "warning" and where(d) == (2, 26)
    assert d.message == ("the trainer never reads its argument `batch_sise`: neither hpoc.Trainer nor the "
                         "trainer's module (t.py) names it")
    assert d.help == ("did you mean `batch_size`? (hpoc.Trainer reads `epochs`, `batch_size`, `task` and "
                      "`grad_accumulation_steps`)")
    # passed on whole, any argument may be read
    _trainer_module(tmp_path, "make(config['width'], **self.args)")
    assert not [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"]
    # an `__init__` of its own takes its arguments: `hpoc check` matches them to it
    (tmp_path / "t.py").write_text(
        "import hpoc\n\nclass T(hpoc.Trainer):\n    def __init__(self, **kw):\n        super().__init__(**kw)\n"
        "    def create_model(self, config):\n        return make(config['width'])\n")
    assert not [d for d in diagnostics(spec, str(tmp_path)) if d.code == "HP816"]


def test_a_domain_written_as_a_map_in_space_is_a_warning_with_the_call_to_write() -> None:
    """`lr = { type = "loguniform", min = 1e-4, max = 1e-1 }` (itwinai's YAML spelling) compiled
    to a constant: every trial got the dict, `0 parameters` the only sign."""
    obj = "objective minimize val_loss\n"
    cases = {
        'lr = { type = "loguniform", min = 1e-4, max = 1e-1 }': "write `lr = loguniform(0.0001, 0.1)`",
        "hidden = { min = 16, max = 128 }": "write `hidden = uniform(16, 128)` (or `loguniform`, `randint`, ...)",
        'act = { type = choice, options = ["relu", "gelu"] }': 'write `act = choice("relu", "gelu")`',
        'lr { type = "loguniform", min = 1e-4, max = 1e-1 }': "write `lr = loguniform(0.0001, 0.1)`",
        # inside a map, a domain needs the map made a group (`opt.lr = ...` beside `opt` is refused)
        "opt = { name = adam, lr = { min = 1e-4, high = 1e-1 } }": "write `opt` as a group, `opt { ... }`, with "
                                                                 "`lr = uniform(0.0001, 0.1)` in it (or "
                                                                 "`loguniform`, `randint`, ...)",
        # in a group, the key as written there (`opt.lr = ...` in `opt { }` would be `opt.opt.lr`)
        'opt { lr = { type = "loguniform", min = 1e-4, max = 1e-1 } }': "write `lr = loguniform(0.0001, 0.1)`",
        'opt { lr { type = "loguniform", min = 1e-4, max = 1e-1 } }': "write `lr = loguniform(0.0001, 0.1)`",
        'opt.lr = { type = "loguniform", min = 1e-4, max = 1e-1 }': "write `opt.lr = loguniform(0.0001, 0.1)`",
        'opt { lr.type = "loguniform", lr.min = 1e-4, lr.max = 1e-1 }': "write `lr = loguniform(0.0001, 0.1)`",
        'lr.type = "loguniform", lr.min = 1e-4, lr.max = 1e-1': "write `lr = loguniform(0.0001, 0.1)`",
    }
    for setting, help in cases.items():
        (w,) = warnings(BASE + f"space {{\n  {setting}\n}}\n" + obj)
        if "type" in setting:
            assert (w.code, w.line, w.help) == ("HP826", 4, help), setting
            assert w.message.endswith("is a map, not a search domain: it is not searched, every trial gets the map "
                                      "as written"), setting
        else:  # bounds alone may be a constant meant (tests/test_domain_maps_read.py): not said as a mistake
            assert (w.code, w.line, w.help) == ("HP826", 4, f"to search it, {help}; if the trainer reads it as "
                                                            "a map, it is right as written"), setting
            assert w.message.endswith("is a constant map: every trial gets it as written; a map in `space` is "
                                      "not searched"), setting
    fixed = {'opt = { name = adam, lr = { min = 1e-4, high = 1e-1 } }': "opt { name = adam, lr = uniform(1e-4, 1e-1) }",
             'opt { lr = { type = "loguniform", min = 1e-4, max = 1e-1 } }': "opt { lr = loguniform(1e-4, 1e-1) }"}
    for setting, written in fixed.items():  # the help, followed: `opt.lr` searched
        plan = plan_of(BASE + f"space {{\n  {written}\n}}\n" + obj)
        assert [p["name"] for p in plan["space"]["params"]] == ["opt.lr"], setting
    for data in ("norm = { mean = 0.5, std = 0.2 }", "box = { min = [0, 0], max = [1, 1] }",
                 'lr = { type = "cosine", min = 0.1 }', "lr = loguniform(1e-4, 1e-1)"):
        assert [w.code for w in warnings(BASE + f"space {{ {data} }}\n" + obj)] == [], data


def test_a_count_written_as_a_list_or_a_domain_map_is_told_the_choice_to_write() -> None:
    """`batch_size = [32, 64]` (Ray's `tune.choice([32, 64])` without the call) was told only
    that a count is a whole number."""
    obj = "objective minimize val_loss\n"
    d = one_error(BASE + "space { batch_size = [32, 64, 128] }\n" + obj)
    assert (d.code, d.help) == ("HP203", "to search these values, write `batch_size = choice(32, 64, 128)`")
    d = one_error(BASE + 'space { epochs = { type = "randint", min = 5, max = 20 } }\n' + obj)
    assert (d.code, d.help) == ("HP203", "to search it, write `epochs = randint(5, 20)`")
    # a count's map of a fractional domain: the whole-number one (`uniform(2, 10)` is refused: fractional)
    for value, call in (("{ min = 2, max = 10 }", "randint(2, 11)"),
                        ('{ type = "loguniform", min = 16, max = 256 }', "lograndint(16, 257)"),
                        ('{ type = "quniform", min = 16, max = 256, q = 16 }', "qrandint(16, 256, 16)")):
        d = one_error(BASE + f"space {{ batch_size = {value}, epochs = 2 }}\n" + obj)
        assert (d.code, d.help) == ("HP203", f"to search it, write `batch_size = {call}`"), value
        assert diagnostics(BASE + f"space {{ batch_size = {call}, epochs = 2 }}\n" + obj) == [], call
    d = one_error(BASE + 'space { epochs = { type = "uniform", min = 1.5, max = 10 } }\n' + obj)
    assert d.help == "`epochs` counts, so it takes whole numbers from 1 up"
    d = one_error(BASE + 'space { epochs = "4" }\n' + obj)  # a count quoted: the fix is its number
    assert (d.code, d.help) == ("HP203", "remove the quotes: 4")
    assert [w.code for w in diagnostics(BASE + 'space { epochs = { type = "randint", min = 5, max = 20 } }\n'
                                        + obj)] == ["HP203"]


def test_a_ray_tune_call_copied_into_space_is_told_the_call_without_tune() -> None:
    """`lr = tune.loguniform(1e-4, 1e-1)` was told to use "a search domain such as
    `uniform(0, 1)`", as for `data:Getter()`: the prefix was the only mistake."""
    obj = "objective minimize val_loss\n"
    cases = {"lr = tune.loguniform(1e-4, 1e-1)": "write `loguniform(...)`: hpoc's domains are Ray Tune's, without `tune.`",
             "bs = ray.tune.choice([32, 64])": "write `choice(...)`: hpoc's domains are Ray Tune's, without `ray.tune.`",
             "seed = tune.grid_search([0, 1])": "write `grid(...)`: hpoc's domains are Ray Tune's, without `tune.`"}
    for setting, help in cases.items():
        d = one_error(BASE + f"space {{ {setting} }}\n" + obj)
        assert (d.code, d.help) == ("HP301", help), setting
    d = one_error(BASE + "space { lr = loguniform(1e-4, 1e-1), epochs = 4 }\n" + obj + "trials { num_samples = 2 }\n"
                  "scheduler pbt { hyperparam_mutations { lr = tune.uniform(1e-4, 1e-1) } }\n")
    assert (d.code, d.help) == ("HP301", "write `uniform(...)`: hpoc's domains are Ray Tune's, without `tune.`")
    d = one_error(BASE + "space { x = data:make(1) }\n" + obj)  # not a domain: as before
    assert d.help == "`x` needs a search domain such as `uniform(0, 1)`, or a literal"


def test_a_condition_on_a_bare_flag_is_told_to_compare_it() -> None:
    """`... if use_bn` (Python's truth test) was "unexpected word `use_bn` after the value:
    one setting per line"; `if use_bn {` and `if not use_bn` had no hint."""
    head = BASE + "space {\n  use_bn = choice(true, false)\n  "
    cases = {
        "eps = uniform(0, 1) if use_bn": (5, 26, "write `if use_bn == true` (or the value that switches it on): "
                                                 "a condition compares with `==` or `in`"),
        "if use_bn { eps = uniform(0, 1) }": (5, 13, "write `if use_bn == true` (or the value that switches it on): "
                                                     "a condition compares with `==` or `in`"),
        "eps = uniform(0, 1) if not use_bn": (5, 30, "write `if use_bn == false`: a condition compares with `==` or `in`"),
        "eps = uniform(0, 1) if use_bn is true": (5, 33, "compare with `==`: `if use_bn == ...`"),
        'eps = uniform(0, 1) if use_bn "yes"': (5, 33, 'write `if use_bn == "yes"`'),
        "eps = uniform(0, 1) if use_bn [true]": (5, 33, "write `if use_bn in [...]`"),
        # on one line with the next setting, or the block's end (were no hint at all)
        "eps = uniform(0, 1) if use_bn, lr = 0.1": (5, 32, "write `if use_bn == true` (or the value that switches "
                                                          "it on): a condition compares with `==` or `in`"),
        "g { eps = uniform(0, 1) if use_bn }": (5, 37, "write `if use_bn == true` (or the value that switches it on): "
                                                       "a condition compares with `==` or `in`"),
    }
    for line, (row, col, help) in cases.items():
        d = one_error(head + line + "\n}\nobjective minimize val_loss\n")
        assert (d.code, where(d), d.help) == ("HP101", (row, col), help), line


def test_several_gpus_per_worker_that_one_process_cannot_use_is_a_warning(tmp_path) -> None:
    """`gpus_per_worker = 4` (one trial on 4 GPUs, as the user meant) trained on the first
    GPU only: each worker is one process on `strategy.device()`, the others sat idle."""
    obj = "objective minimize val_loss\n"
    (w,) = [w for w in warnings(BASE + obj + "resources { gpus_per_worker = 4 }\n") if w.code == "HP804"]
    assert (where(w), w.message) == ((4, 13), "each worker trains on one GPU (a process of DDP or DeepSpeed "
                                              "uses one), so `gpus_per_worker = 4` leaves 3 of its GPUs idle")
    assert w.help == ("for one trial on 4 GPUs write `workers = 4` with `gpus_per_worker = 1` "
                      "(each worker on one GPU); for 4 trials at once, `gpus_per_worker = 1`")
    (w,) = [w for w in warnings(BASE + obj + "resources { workers = 2, gpus_per_worker = 2 }\n")
            if w.code == "HP804"]
    # the same 4 GPUs hold 2 trials of 2 workers on one GPU each, not 4
    assert w.help == ("for one trial on 4 GPUs write `workers = 4` with `gpus_per_worker = 1` (each worker on "
                      "one GPU); for 2 trials at once, `gpus_per_worker = 1`")
    assert "HP804" not in [w.code for w in warnings(BASE + obj + "resources { gpus_per_worker = 1 }\n")]
    # a trainer that spreads its model over the process's GPUs itself: no opinion
    (tmp_path / "trainer.py").write_text(own_trainer(body="    def create_model(self, config):\n"
                                                          "        return load(device_map='auto')\n"))
    spec = BASE + obj + "resources { gpus_per_worker = 2 }\n"
    assert "HP804" not in [w.code for w in diagnostics(spec, str(tmp_path))]


def test_a_model_parallel_trainer_is_not_told_its_second_gpu_idles(tmp_path) -> None:
    """`gpus_per_worker = 2` for a model split over the process's GPUs was told one GPU sits
    idle when the split named them other than `"cuda:1"` (`torch.device("cuda", 1)`,
    `.cuda(1)`, a pipeline), or when the model lives in a module of the
    study's own that the trainer imports (`from models import TwoGPU`)."""
    spec = BASE + "objective minimize val_loss\nresources { gpus_per_worker = 2 }\n"
    model = "    def create_model(self, config):\n        return %s\n"
    for split in ('Net().to(torch.device("cuda", 1))', "Net().cuda(1)", "Pipe(Net(), chunks=8)",
                  "parallelize_module(Net(), mesh, plan)"):
        (tmp_path / "trainer.py").write_text("import torch\n" + own_trainer(body=model % split))
        assert "HP804" not in [w.code for w in diagnostics(spec, str(tmp_path))], split
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("from .split import TwoGPU\n")
    (tmp_path / "models" / "split.py").write_text(
        "import torch\nclass TwoGPU(torch.nn.Module):\n    def __init__(self):\n"
        '        self.a = torch.nn.Linear(4, 4).to("cuda:0")\n        self.b = torch.nn.Linear(4, 2).to("cuda:1")\n')
    (tmp_path / "trainer.py").write_text("from models import TwoGPU\n" + own_trainer(body=model % "TwoGPU()"))
    assert "HP804" not in [w.code for w in diagnostics(spec, str(tmp_path))]
    # one process on one GPU, its model from a module of its own: still told
    (tmp_path / "models" / "split.py").write_text("import torch\nTwoGPU = torch.nn.Linear\n")
    assert "HP804" in [w.code for w in diagnostics(spec, str(tmp_path))]
    for one in ("Net().cuda(0)", 'Net().to(f"cuda:{rank}")', 'Net().to(torch.device("cuda", rank))'):
        (tmp_path / "trainer.py").write_text("import torch\n" + own_trainer(body=model % one))
        assert "HP804" in [w.code for w in diagnostics(spec, str(tmp_path))], one


def test_an_exponent_with_a_typographic_minus_is_told_so_inside_a_call_too() -> None:
    """`loguniform(1e−5, 1e−2)` copied from a paper (U+2212) was "unexpected name `e` right
    after the number `1`" with a hint about sizes and durations; `x = 1e−5` said the minus."""
    for value, col in (("loguniform(1e−5, 1e−2)", 26), ("choice(1e–3, 1e-2)", 22), ("1e−5", 15)):
        d = one_error(BASE + f"space {{ x = {value} }}\nobjective minimize val_loss\n")
        assert (d.code, where(d)) == ("HP102", (3, col)), value
        assert d.help.startswith("write `-`: `") and d.help.endswith("not the ASCII minus sign"), value


def test_a_search_or_scheduler_written_as_a_call_is_shown_its_block() -> None:
    """`search optuna(sampler = tpe)`, as Python builds `OptunaSearch(...)`, had no hint."""
    d = one_error(BASE + "objective minimize val_loss\nsearch optuna(sampler = tpe, seed = 0)\n")
    assert (d.code, where(d), d.help) == ("HP101", (4, 14), "options go in braces: "
                                                            "`search optuna { sampler = tpe, seed = 0 }`")
    d = one_error(BASE + "objective minimize val_loss\nscheduler asha(max_t=10, grace_period=1)\n")
    assert d.help == "options go in braces: `scheduler asha { max_t=10, grace_period=1 }`"


def test_a_gpu_type_pasted_with_its_gres_prefix_is_told_to_give_the_type_alone() -> None:
    """`gpu_type = "gpu:a100"` (from `--gres=gpu:a100:4`) was refused without a hint."""
    d = one_error(BASE + 'slurm { time = 1h, gpus_per_node = 4, gpu_type = "gpu:a100" }\n')
    assert (d.code, d.help) == ("HP204", 'the type alone, as the site\'s gres.conf names it: `gpu_type = "a100"` '
                                         "for `--gres=gpu:a100:4`; the count is `gpus_per_node`")


def test_a_checkpoint_score_order_against_its_metric_is_reported() -> None:
    """`score_attribute = val_loss, score_order = max` under `minimize val_loss` kept each
    trial's worst checkpoints and deleted its best, without a word (only an order given
    without the attribute was refused)."""
    obj = "space { epochs = 4 }\nobjective minimize val_loss\n"
    d = one_error(BASE + obj + "checkpoint { score_attribute = val_loss, score_order = max }\n")
    assert (d.code, where(d)) == ("HP204", (5, 42))
    assert d.message == ("`score_order = max` ranks checkpoints by `val_loss`, which the objective minimises: "
                         "the worst ones would be kept")
    # a metric that is not the objective: its name tells which way is better
    (w,) = [w for w in warnings(BASE + obj + "checkpoint { score_attribute = val_accuracy, score_order = min }\n")
            if w.code == "HP809"]
    assert (where(w), w.message) == ((5, 46), "checkpoints are ranked by the lowest `val_accuracy`, but its name "
                                              "says higher is better: the worst ones would be kept")
    assert w.help == "write `score_order = max` (if the lowest is really meant, this warning can be ignored)"
    for fine in ("score_attribute = val_loss, score_order = min", "score_attribute = val_accuracy, score_order = max",
                 "score_attribute = my_score, score_order = min"):
        assert [d.code for d in diagnostics(BASE + obj + f"checkpoint {{ {fine} }}\n")
                if d.code in ("HP204", "HP809")] == [], fine


def test_a_value_only_some_trials_get_is_a_one_value_choice_under_its_condition() -> None:
    """`nesterov = true` inside `if opt == "sgd"` was refused (a constant cannot be conditional)
    with no way given; and `nesterov = choice(true) if ...`, the way, was warned (HP810) to
    "write the constant" - which is refused."""
    src = BASE + 'space {\n  opt = choice("adam", "sgd")\n  %s\n  epochs = 2\n}\nobjective minimize val_loss\n'
    d = one_error(src % 'nesterov = true if opt == "sgd"')
    assert (d.code, d.message) == ("HP303", "constant `nesterov` cannot be conditional")
    assert d.help == ("a constant is in every trial; for a value only these trials get, write "
                      '`nesterov = choice(true) if opt == "sgd"`')
    # in an `if` block, the block is the condition: a second one there is refused (nested)
    d = one_error(src % 'if opt == "sgd" { nesterov = true }')
    assert (d.code, d.message) == ("HP303", "constant `nesterov` cannot be conditional")
    assert d.help == ("a constant is in every trial; for a value only these trials get, write "
                      "`nesterov = choice(true)` in the `if` block")
    assert diagnostics(src % 'if opt == "sgd" { nesterov = choice(true) }') == []
    assert diagnostics(src % 'nesterov = choice(true) if opt == "sgd"') == []
    plan = plan_of(src % 'nesterov = choice(true) if opt == "sgd"')
    assert plan["space"]["params"][1]["condition"] == {"param": "opt", "values": ["sgd"]}
    # unconditional, a one-value choice still searches nothing
    assert [w.code for w in warnings(src % "nesterov = choice(true)")] == ["HP810"]


def test_pbt_that_would_mutate_the_number_of_epochs_is_a_warning() -> None:
    """`epochs = choice(6, 12)` under `scheduler pbt` (which mutates every searched parameter)
    or `hyperparam_mutations { epochs = [6, 12] }`: an exploit gave a trial another length
    mid-run, one past its new last epoch ending at once - without a word."""
    head = BASE + "objective maximize val_accuracy\ntrials { num_samples = 4 }\n"
    cases = {
        "space { lr = loguniform(1e-4, 1e-1), epochs = choice(6, 12) }\nscheduler pbt { perturbation_interval = 2 }":
            (5, 11),
        "space { lr = loguniform(1e-4, 1e-1), epochs = 12 }\nscheduler pbt { perturbation_interval = 2, "
        "hyperparam_mutations { lr = loguniform(1e-4, 1e-1), epochs = [6, 12] } }": (6, 92),
        "space { lr = loguniform(1e-4, 1e-1), epochs = randint(6, 13) }\nscheduler pb2 { perturbation_interval = 2 }":
            (5, 11),
    }
    for spec, at in cases.items():
        found = [w for w in warnings(head + spec + "\n") if w.code == "HP805" and "`epochs`" in w.message]
        assert len(found) == 1, spec
        assert found[0].message.endswith("mutates `epochs`: a trial that exploits another gets another number of "
                                         "epochs mid-run (one that has trained more ends at once)"), spec
        assert found[0].line == at[0], spec
    helps = [w.help for spec in cases for w in warnings(head + spec + "\n") if w.code == "HP805" and "`epochs`" in w.message]
    assert helps == ["make `epochs` a constant (`epochs = 12`): PBT compares trials over the same epochs",
                     "leave `epochs` out of `hyperparam_mutations`: PBT compares trials over the same epochs",
                     "make `epochs` a constant (`epochs = 12`): PB2 compares trials over the same epochs"]
    # mutations that leave `epochs` alone: no opinion
    spec = ("space { lr = loguniform(1e-4, 1e-1), epochs = choice(6, 12) }\n"
            "scheduler pbt { perturbation_interval = 2, hyperparam_mutations { lr = loguniform(1e-4, 1e-1) } }\n")
    assert [w for w in warnings(head + spec) if "`epochs`" in w.message] == []


def test_a_stop_on_seconds_takes_a_duration() -> None:
    """`stop = { time_total_s = 1h }` was refused ("must be a number, not the duration"),
    while `max_t = 1h` under `time_attr = time_total_s` is 3600: a clock counts seconds."""
    head = BASE + "space { epochs = 4 }\nobjective minimize val_loss\n"
    assert plan_of(head + "trials { stop = { time_total_s = 1h, training_iteration = 4 } }\n")["trials"]["stop"] \
        == {"time_total_s": 3600, "training_iteration": 4}
    assert plan_of(head + "trials { stop { time_since_restore = 00:30:00 } }\n")["trials"]["stop"] \
        == {"time_since_restore": 1800}
    d = one_error(head + "trials { stop = { training_iteration = 1h } }\n")  # counts epochs, not seconds
    assert (d.code, d.message) == ("HP203", "`training_iteration` in `stop` must be a number, not the duration `1h`")


def test_a_seconds_time_attr_with_the_default_max_t_is_a_warning() -> None:
    """`scheduler asha { time_attr = time_total_s }`: `max_t` kept its default, 100, now
    seconds: every trial stopped after 100 s of training, without a word."""
    head = BASE + "space { epochs = 20 }\nobjective minimize val_loss\ntrials { num_samples = 16 }\n"
    for name, default in (("asha", 100), ("hyperband", 81)):
        found = [w for w in warnings(head + f"scheduler {name} {{ time_attr = time_total_s }}\n")
                 if w.code == "HP805" and "max_t" in w.message]
        assert [(where(w), w.message, w.help) for w in found] == [(
            (6, 11), f"every trial stops after {default} s of training: `max_t` is not given, and its default, "
                     f"{default}, counts `time_attr` units, here seconds",
            "set `max_t` to the longest a trial may train, e.g. `max_t = 2h`")], name
    for fine in ("asha { time_attr = time_total_s, max_t = 2h }", "asha { max_t = 20 }",
                 "asha { time_attr = time_total_s, stop_last_trials = false }"):
        assert [w for w in warnings(head + f"scheduler {fine}\n") if "max_t" in w.message] == [], fine


def test_bohb_with_max_t_before_the_last_epoch_is_a_warning_as_hyperband() -> None:
    """`scheduler bohb { max_t = 9 }` over 20 epochs stopped every trial at 9 (Ray's BOHB is
    its HyperBand): said for `asha` and `hyperband`, not for `bohb`."""
    head = BASE + "space { lr = uniform(0, 1), epochs = 20 }\nobjective minimize val_loss\ntrials { num_samples = 16 }\n"
    found = [w for w in warnings(head + "search bohb {}\nscheduler bohb { max_t = 9 }\n") if w.code == "HP805"]
    assert [(where(w), w.message) for w in found] == [((7, 18), "trials stop at `max_t` = 9, before their 20 `epochs`")]


def test_an_optuna_sampler_given_by_its_class_name_is_told_the_word() -> None:
    """`sampler = "TPESampler"` (Optuna's class) was refused without a hint."""
    head = BASE + "space { lr = uniform(0, 1), epochs = 2 }\nobjective minimize val_loss\n"
    for given, word in (('"TPESampler"', "tpe"), ("optuna.samplers.NSGAIISampler", "nsga2"),
                        ('"CmaEsSampler"', "cmaes"), ("GPSampler", "gp")):
        d = one_error(head + f"search optuna {{ sampler = {given} }}\n")
        assert (d.code, d.help) == ("HP203", f"write `{word}`"), given


def test_an_extra_option_pasted_with_its_sbatch_prefix_is_told_the_option() -> None:
    """`extra = ["#SBATCH --exclusive"]` (a job script's line) was refused without a hint."""
    d = one_error(BASE + 'slurm { time = 1h, extra = ["#SBATCH --exclusive", "--hint=nomultithread"] }\n')
    assert (d.code, where(d), d.help) == ("HP204", (3, 29), 'write "--exclusive": hpoc writes the `#SBATCH` itself')


def test_trials_that_miss_the_nodes_by_their_drivers_cpu_are_told_to_give_a_worker_one_fewer() -> None:
    """Two trials of 4 workers × 12 CPUs on 2 nodes of 48: each trial's driver takes 0.01 CPU
    more, so one runs at a time. The help said only "raise `slurm.cpus_per_node` to 49",
    which a 48-core node cannot."""
    spec = (BASE + "space { epochs = 2 }\nobjective minimize val_loss\ntrials { num_samples = 4, max_concurrent = 2 }\n"
            "resources { workers = 4, cpus_per_worker = 12, gpus_per_worker = 1 }\n"
            "slurm { nodes = 2, gpus_per_node = 4, cpus_per_node = 48, time = 1h }\n")
    found = [w for w in warnings(spec) if w.code == "HP804" and "max_concurrent" in w.message]
    assert [w.help for w in found] == [
        "lower `max_concurrent` to 1; or, for 2 at once, raise `slurm.cpus_per_node` to 49 (or lower "
        "`cpus_per_worker` to 11: each trial's driver takes 0.01 CPU beside its workers)"]


def test_fractional_gpus_the_jobs_cpus_run_one_at_a_time_is_a_warning() -> None:
    """`gpus_per_worker = 0.25` to run 4 trials on a GPU, with `cpus_per_node` left at its
    default (room for one trial): one trial at a time, three quarters of the GPU idle."""
    head = BASE + "space { epochs = 2 }\nobjective minimize val_loss\ntrials { num_samples = 8 }\n"
    for slurm in ("slurm { time = 1h }", "slurm { gpus_per_node = 1, time = 1h }"):
        found = [w for w in warnings(head + "resources { gpus_per_worker = 0.25 }\n" + slurm + "\n")
                 if w.code == "HP804"]
        assert [(w.message, w.help) for w in found] == [(
            "trials of 0.25 GPUs share a GPU, but the job's CPUs hold 1 trial at once (`cpus_per_node` = 1, "
            "the default: room for one trial): the GPUs train 1 at a time, not the 4 their shares hold",
            "set `slurm.cpus_per_node = 4` (4 trials of 1 CPU at once)")], slurm
    assert [w for w in warnings(head + "resources { gpus_per_worker = 0.25 }\nslurm { cpus_per_node = 4, time = 1h }\n")
            if w.code == "HP804"] == []
    # several workers with a fraction each: refused (HP501), not also told CPUs to add
    assert [d.code for d in diagnostics(head + "resources { workers = 2, gpus_per_worker = 0.25, cpus_per_worker = 2 }\n"
                                        "slurm { gpus_per_node = 1, cpus_per_node = 8, time = 1h }\n")] == ["HP501"]


def test_a_stop_on_accuracy_in_percent_is_a_warning() -> None:
    """`stop = { val_accuracy = 99 }` (99 %): hpoc's loop reports a fraction, so no trial
    ever reached it and every trial ran to its last epoch, without a word."""
    head = BASE + "space { epochs = 20 }\nobjective maximize val_accuracy\n"
    found = [w for w in warnings(head + "trials { num_samples = 4, stop = { val_accuracy = 99 } }\n")
             if w.code == "HP805"]
    assert [(where(w), w.message, w.help) for w in found] == [(
        (5, 36), "`stop` ends a trial once `val_accuracy` reaches 99, but hpoc's default train loop reports it "
                 "as a fraction, from 0 to 1: no trial reaches it", "write `val_accuracy = 0.99`")]
    assert [w for w in warnings(head + "trials { stop = { val_accuracy = 0.99 } }\n") if w.code == "HP805"] == []


def test_ray_trains_resource_arguments_in_resources_are_told_hpocs_keys() -> None:
    """`resources_per_worker = { CPU = 4, GPU = 1 }` (Ray Train's ScalingConfig) was told
    "did you mean `gpus_per_worker`?", and `use_gpu` only the valid keys."""
    want = "write `cpus_per_worker = ...` and `gpus_per_worker = ...` (a trial's workers: `workers = ...`)"
    for key in ("resources_per_worker = { CPU = 4, GPU = 1 }", "use_gpu = true", "resources_per_trial = { gpu = 1 }"):
        d = one_error(BASE + f"resources {{ {key} }}\n")
        assert (d.code, d.help) == ("HP201", want), key


@pytest.mark.parametrize("content, key, meant, effect", [
    # DeepSpeed skips a top-level key it does not know: the trials ran at hpoc's stage 2
    ('{"zero_optimisation": {"stage": 3}}', "zero_optimisation", "zero_optimization", "ignores"),
    ('{"train_micro_batch_size": 16}', "train_micro_batch_size", "train_micro_batch_size_per_gpu", "ignores"),
    ('{"Gradient_Accumulation": 2}', "Gradient_Accumulation", "gradient_accumulation_steps", "ignores"),
    # inside `zero_optimization` DeepSpeed refuses it, after Ray and the workers started
    ('{"zero_optimization": {"stage": 2, "offload_optimiser": {"device": "cpu"}}}',
     "zero_optimization.offload_optimiser", "offload_optimizer", "refuses"),
])  # fmt: skip
def test_a_misspelt_deepspeed_config_key_is_warned_naming_the_key_meant(tmp_path, content, key, meant,
                                                                       effect) -> None:
    (w,) = _ds_diagnostics(tmp_path, content)
    assert (w.severity, w.code, where(w)) == ("warning", "HP804", (3, 59))
    assert f'the DeepSpeed config "ds.json" sets `{key}`, which DeepSpeed does not know: `{meant}`?' == w.message
    assert effect in w.render()
    # keys DeepSpeed knows, and unknown ones like no key it knows (a note of the user's), are not
    fine = '{"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}, "optimizer": ' \
           '{"type": "AdamW", "params": {"lr": 0.001}}, "wall_clock_breakdown": false, "comment": "x"}'
    assert _ds_diagnostics(tmp_path, fine) == []


@pytest.mark.parametrize("content, key", [
    ('{"elasticity": {"enabled": false}}', "elasticity"),
    ('{"sparse_attention": {"mode": "fixed"}}', "sparse_attention"),
    ('{"zero_optimization": {"stage": 3, "mics_shard_size": 8}}', "zero_optimization.mics_shard_size"),
])  # fmt: skip
def test_a_section_deepspeed_019_removed_is_warned_not_called_a_misspelling(tmp_path, content, key) -> None:
    """DeepSpeed 0.19 refuses a file with a section it removed (an older Megatron file's
    `elasticity`), in every trial after Ray started; 0.16-0.18, which hpoc takes, read it."""
    (w,) = _ds_diagnostics(tmp_path, content)
    assert (w.severity, w.code) == ("warning", "HP804")
    assert w.message == f'the DeepSpeed config "ds.json" sets `{key}`, which DeepSpeed 0.19 removed: it refuses the file'
    assert "does not know" not in w.render()
    # a newer DeepSpeed's keys, and an HF Trainer file's "auto" ones, are neither
    fine = ('{"zero_optimization": {"stage": 3, "zero_hpz_partition_size": 8, "zero_quantized_weights": true, '
            '"stage3_prefetch_bucket_size": "auto", "stage3_gather_16bit_weights_on_model_save": true}, '
            '"data_types": {"grad_accum_dtype": "fp32"}, "compile": {"deepcompile": false}, '
            '"tensor_parallel": {"autotp_size": 1}, "checkpoint": {"use_node_local_storage": true}, '
            '"aio": {"block_size": 1048576}, "comms_logger": {"enabled": false}, "flops_profiler": {"enabled": false}, '
            '"wandb": {"enabled": false}, "csv_monitor": {"enabled": false}, "pipeline": {}, '
            '"gradient_clipping": "auto", "train_micro_batch_size_per_gpu": "auto"}')
    assert _ds_diagnostics(tmp_path, fine) == []


def test_a_deepspeed_config_beside_the_cwd_rather_than_the_spec_is_told_the_path_from_the_spec(tmp_path,
                                                                                               monkeypatch) -> None:
    """`hpoc check studies/x.hpo` with `config = "ds.json"` in the folder hpoc runs in: the
    warning said only that the spec's folder has none, and the trials failed reading it."""
    (tmp_path / "studies").mkdir()
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3}}', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    text = BASE + 'resources { gpus_per_worker = 1, deepspeed { config = "ds.json" } }\n'
    (w,) = diagnostics(text, str(tmp_path / "studies"))
    assert (w.severity, w.message) == ("warning", 'DeepSpeed config "ds.json" does not exist (yet)')
    assert f"there is one in the folder hpoc runs in ({tmp_path / 'ds.json'})" in w.render()
    assert w.help == 'a relative `config` is read from the spec\'s folder: write "../ds.json"'
    monkeypatch.chdir(tmp_path / "studies")  # none here either: nothing more to say
    (w,) = diagnostics(text, str(tmp_path / "studies"))
    assert w.help == "it must exist when the study runs" and "hpoc runs in" not in w.render()


@pytest.mark.parametrize("section, space, warned", [
    ('"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}', "lr = 0.01",
     "sets its own `optimizer`: the space's `lr` (0.01) never reaches training (the trials use the file's 0.001)"),
    ('"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}', "weight_decay = 0.1",
     "sets its own `optimizer`: the space's `weight_decay` (0.1) never reaches training (the trials use "
     "DeepSpeed's default)"),
    ('"optimizer": {"type": "AdamW", "params": {"lr": 0.01}}', "lr = 0.01", None),   # the same value
    ('"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}', "lr = 0.01", None),  # filled in from the trial
    ('"zero_optimization": {"stage": 2}', "lr = 0.01", None),                         # the trainer's optimizer
])  # fmt: skip
def test_a_constant_lr_the_deepspeed_configs_optimizer_overrides_is_warned(tmp_path, section, space, warned) -> None:
    """`lr = 0.01` in `space` beside a copied file's `"lr": 0.001`: every trial trained at
    0.001, said only in the trials' own logs."""
    d = _ds_diagnostics(tmp_path, "{" + section + "}", extra=f"space {{ {space} }}\n")
    if warned is None:
        assert d == []
        return
    (w,) = d
    assert (w.code, w.severity, w.message) == ("HP804", "warning", f'the DeepSpeed config "ds.json" {warned}')


@pytest.mark.parametrize("part", ["offload_optimizer", "offload_param"])
def test_a_zero_offload_device_deepspeed_refuses_is_an_error(tmp_path, part) -> None:
    """`"device": "gpu"` failed every trial at DeepSpeed's start, after Ray and the workers."""
    ds = {"zero_optimization": {"stage": 3, part: {"device": "gpu"}},
          "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
    (d,) = _ds_diagnostics(tmp_path, json.dumps(ds))
    assert (d.severity, d.code, d.message) == (
        "error", "HP204", f'the DeepSpeed config "ds.json" sets `zero_optimization.{part}.device` to "gpu": '
                          'DeepSpeed offloads to "cpu" or "nvme" (or "none")')
    ds["zero_optimization"][part]["device"] = "none"
    assert not _ds_diagnostics(tmp_path, json.dumps(ds))


def test_a_deepspeed_warmup_cosine_schedule_scales_the_searched_lr_and_is_not_warned(tmp_path) -> None:
    """WarmupCosineLR moves the optimizer's own rate by ratios: the searched `lr` reaches
    training, and `hpoc check` said it never did (the help: remove the scheduler)."""
    cosine = {"type": "WarmupCosineLR", "params": {"total_num_steps": 100, "warmup_num_steps": 10}}
    extra = "space { lr = loguniform(1e-4, 1e-2) }\n"
    assert _ds_diagnostics(tmp_path, json.dumps({"scheduler": cosine}), extra=extra) == []
    # WarmupLR's `warmup_max_lr` is a rate of its own: the searched one is lost
    warmup = {"type": "WarmupLR", "params": {"warmup_max_lr": 0.001, "warmup_num_steps": 10}}
    (w,) = _ds_diagnostics(tmp_path, json.dumps({"scheduler": warmup}), extra=extra)
    assert "the searched `lr` never reaches training" in w.message
    # under PBT it still sets the rate every step from each trial's first `lr`: a mutation is lost
    pbt = extra + "scheduler pbt { perturbation_interval = 1 }\n"
    (w,) = _ds_diagnostics(tmp_path, json.dumps({"scheduler": cosine}), extra=pbt)
    assert "`pbt`'s mutations of `lr` never reach training" in w.message
    assert w.notes == ("it scales each trial's first value",)


def test_a_trainers_create_optimizer_a_deepspeed_configs_optimizer_replaces_is_warned(tmp_path) -> None:
    """A file copied from another project, with its own `optimizer`: the trainer's SGD never
    trained, said only in the trials' logs."""
    body = ("\n    def create_optimizer(self, model, config):\n"
            "        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\n")
    (tmp_path / "trainer.py").write_text(own_trainer(body=body), encoding="utf-8")
    (w,) = _ds_diagnostics(tmp_path, '{"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}}')
    assert (w.code, w.severity, w.message) == (
        "HP804", "warning", 'the DeepSpeed config "ds.json" sets its own `optimizer` (AdamW): the trainer\'s '
                            "`create_optimizer` (T) never trains")
    # its values left to "auto" come from the trainer's optimizer: it is used
    assert _ds_diagnostics(tmp_path, '{"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}') == []
    (tmp_path / "trainer.py").write_text(own_trainer(), encoding="utf-8")  # hpoc's default optimizer
    assert _ds_diagnostics(tmp_path, '{"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}}') == []


def test_a_module_the_parser_warns_of_is_checked_without_printing_its_warnings(tmp_path) -> None:
    """`re.compile("\\d+")` in the trainer: the check printed the parser's own warning
    (SyntaxWarning from Python 3.12, a DeprecationWarning before), which only compile() was
    kept from printing; and with warnings as errors (-W error) it called the module's valid
    code a syntax error."""
    (tmp_path / "trainer.py").write_text('import re\nimport hpoc\nDIGITS = re.compile("\\d+")\n'
                                         "class T(hpoc.Trainer):\n    pass\n")
    import warnings as py_warnings  # `warnings` here is hpo_util's

    from hpoc.compiler import pysource

    pysource._parse.cache_clear()  # parsed anew under each filter
    with py_warnings.catch_warnings():
        py_warnings.simplefilter("error")
        assert [d.code for d in diagnostics(BASE, str(tmp_path)) if d.code == "HP803"] == []
    pysource._parse.cache_clear()
    with py_warnings.catch_warnings(record=True) as said:
        py_warnings.simplefilter("always")
        diagnostics(BASE, str(tmp_path))
    assert [str(w.message) for w in said if w.filename.endswith("trainer.py")] == []
