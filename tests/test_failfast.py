"""The fail-fast rule (hpoc/runtime/failfast.py) on trials made up here: no Ray."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpoc.runtime.failfast import FailFast, hint, signature

TRACE = """Failure # 1 (occurred at 2026-11-29_00:31:{sec:02d})
ray::ImplicitFunc.train() (pid={pid}, ip=10.0.0.{ip}, actor_id=ab{pid}cd, repr=func)
  File "/home/u/study/train.py", line 42, in train_epoch
    loss = self.loss_fn(out, y)
{error}
"""


def _text(error: str, pid: int = 1234) -> str:
    return TRACE.format(sec=pid % 60, pid=pid, ip=pid % 250, error=error)


def test_the_same_error_is_the_same_whatever_numbers_and_addresses_it_holds():
    a = signature(_text("RuntimeError: expected scalar type Long but found Float (device 0, 0x7f3a12)", 11))
    b = signature(_text("RuntimeError: expected scalar type Long but found Float (device 3, 0xdeadbeef)", 97))
    assert a == b and a is not None
    assert signature("RayTaskError(RuntimeError): ray::Pool.run() (pid=7, actor_id=8c3f2a1b9e0d)") == \
        signature("RayTaskError(RuntimeError): ray::Pool.run() (pid=9, actor_id=c0ffee12deadbeef)")
    assert "RuntimeError: expected scalar type Long but found Float" in a
    # a shape holds the trial's own sizes: torch writes 64x13, 12x32
    assert signature("RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x13 and 12x16)") == \
        signature("RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x13 and 12x32)")
    assert signature("ValueError: no x1 layer") != signature("ValueError: no x2 layer")  # a name, not a size


def test_another_type_or_message_is_another_error():
    base = signature(_text("RuntimeError: expected scalar type Long but found Float"))
    assert signature(_text("RuntimeError: expected scalar type Float but found Long")) != base
    assert signature(_text("TypeError: expected scalar type Long but found Float")) != base
    assert signature(_text("ValueError: lr=0.1 too large")) == signature(_text("ValueError: lr=3e-05 too large"))
    assert signature("") is None and signature(None) is None and signature("errored") is None


def test_an_exit_code_signal_or_errno_is_the_failure_not_a_number_of_it():
    """A process killed by the OOM killer (137) and one whose Python exited 1 are two
    failures: as "alike but for numbers" the 137s hid the code-1 trials' cause."""
    def died(code):
        return signature(f"the trial's process exited with code {code}")

    assert died(137) != died(1) and died(137) == signature("the trial's process exited with code 137")
    assert signature("CalledProcessError: Command 'x' returned non-zero exit status 1.") != \
        signature("CalledProcessError: Command 'x' returned non-zero exit status 2.")
    assert signature("RuntimeError: worker exitcode=-9") != signature("RuntimeError: worker exitcode=-11")
    assert signature("RuntimeError: killed by signal 9") != signature("RuntimeError: killed by signal 11")
    assert signature("OSError: [Errno 28] disk") != signature("OSError: [Errno 5] disk")
    # the rank that died is still a number of the same failure
    assert signature("the process of the trial's rank 0 exited with code 1") == \
        signature("the process of the trial's rank 3 exited with code 1")


def test_the_trials_own_id_and_directory_do_not_make_errors_differ():
    def err(tid):
        return _text(f"FileNotFoundError: /r/toy/trial_00001_{tid}/ckpt.pt not found ({tid})")

    assert signature(err("a1b2c"), "a1b2c", "/r/toy/trial_00001_a1b2c") == \
        signature(err("ffe0d"), "ffe0d", "/r/toy/trial_00001_ffe0d")


@dataclass
class Trial:
    trial_id: str
    status: str = "ERROR"
    error_msg: str | None = None
    last_result: dict = field(default_factory=dict)
    path: str | None = None
    error_file: str | None = None


def _failed(tid: str, error: str = "RuntimeError: expected scalar type Long but found Float") -> Trial:
    return Trial(tid, error_msg=_text(error, pid=int(tid, 16)))


def _run(rule: FailFast, trials: list[Trial]) -> list[str | None]:
    return [rule.trial_ended(t, trials) for t in trials]


def test_the_first_k_trials_failing_the_same_way_stop_the_study_once():
    trials = [_failed(f"{i:x}") for i in range(1, 6)]
    verdicts = _run(FailFast(k=3, total=64, metric="val_loss"), trials)
    assert verdicts[:2] == [None, None] and verdicts[3:] == [None, None]
    message = verdicts[2]
    assert message.count("RuntimeError: expected scalar type Long but found Float") == 1
    assert "all of the first 3 trials to end failed with the same error" in message
    assert "no trial reported `val_loss`" in message
    assert "--> /home/u/study/train.py:42" in message


def test_a_study_of_k_trials_or_fewer_stops_once_every_trial_failed_the_same_way_once():
    """A 2-trial smoke test whose trainer is broken: not 2 x (1 + retries) identical failures."""
    rule = FailFast(k=3, total=2, metric="acc")
    one, two = Trial("1", status="PENDING"), Trial("2", status="PENDING")  # requeued for a retry
    error = _text("ValueError: this model cannot be built")
    assert rule.trial_failed(one, [one, two], error) is None
    # its retry's failure does not decide again: the first failure of each trial does
    assert rule.trial_failed(one, [one, two], _text("ValueError: failed the same way twice")) is None
    message = rule.trial_failed(two, [one, two], _text("ValueError: this model cannot be built", 77))
    assert message.startswith("all 2 trials of the study failed with the same error, and no trial "
                              "reported `acc`\n  ValueError: this model cannot be built\n"), message
    assert "not retrying" in rule.headline
    # a big study's rule waits for the trials to end, retries included
    assert FailFast(k=3, total=9, metric="acc").trial_failed(one, [one], error) is None


def test_one_at_a_time_a_small_study_stops_once_every_trial_made_so_far_failed_the_same_way():
    """Trials made one at a time (`max_concurrent = 1`): the 3rd trial is not waited for."""
    rule, error = FailFast(k=3, total=3, metric="acc"), _text("KeyError: 'label'")
    one, two = Trial("1", status="PENDING"), Trial("2", status="PENDING")
    assert rule.trial_failed(one, [one], error) is None  # one trial alone says little
    one.status = "ERROR"
    assert rule.trial_ended(one, [one]) is None  # its retry failed too: Repeats ended it
    message = rule.trial_failed(two, [one, two], error)
    assert message.startswith("all 2 trials made so far (of 3) failed with the same error"), message


def test_a_small_study_goes_on_when_nothing_is_left_to_stop_or_the_failure_may_pass():
    # no retries: every trial ended in ERROR, and the study ends as it would have
    trials = [_failed("1"), _failed("2"), _failed("3")]
    assert _run(FailFast(k=3, total=3, metric=None), trials) == [None] * 3
    # one trial alone: retry.Repeats stops a second identical failure
    assert FailFast(k=3, total=1, metric=None).trial_failed(Trial("1", "PENDING"), [], _text("KeyError: 'x'")) is None
    # a lost node: its retry may well pass
    lost = _text("ray.exceptions.ActorDiedError: The actor died unexpectedly")
    rule, pair = FailFast(k=3, total=2, metric=None), [Trial("1", "PENDING"), Trial("2", "PENDING")]
    assert [rule.trial_failed(t, pair, lost) for t in pair] == [None, None]
    # a trial that completed
    rule, done = FailFast(k=3, total=2, metric=None), Trial("2", status="TERMINATED")
    assert rule.trial_failed(pair[0], pair, _text("KeyError: 'x'")) is None
    assert rule.trial_ended(done, [pair[0], done]) is None
    assert FailFast(k=1, total=9, metric=None).trial_ended(trials[0], trials).startswith(
        "the first trial to end failed with the same error, and no trial reported anything")


def test_no_stop_when_the_errors_differ_a_trial_succeeded_or_it_is_off():
    other = _failed("2", "KeyError: 'label'")
    assert _run(FailFast(k=3, total=8, metric="acc"), [_failed("1"), other, _failed("3")]) == [None] * 3
    # the first 3 to end decide: a 4th failing like the others does not fire it later
    mixed = [_failed("1"), other, _failed("3"), _failed("4")]
    assert _run(FailFast(k=3, total=8, metric="acc"), mixed) == [None] * 4
    done = Trial("2", status="TERMINATED", last_result={"acc": 0.5, "training_iteration": 1})
    assert _run(FailFast(k=3, total=8, metric="acc"), [_failed("1"), done, _failed("3")]) == [None] * 3
    # a trial still running that reported the objective: the error comes with some configs
    running = Trial("9", status="RUNNING", last_result={"acc": 0.1, "training_iteration": 1})
    rule = FailFast(k=2, total=8, metric="acc")
    assert [rule.trial_ended(t, [running, *failed]) for failed in [[_failed("1"), _failed("2")]]
            for t in failed] == [None, None]
    assert _run(FailFast(k=0, total=8, metric="acc"), [_failed(f"{i}") for i in range(1, 9)]) == [None] * 8


def test_the_hint_follows_the_resume_settings():
    plan = {"resume": {"enabled": True, "retry_errored": True}}
    assert "run the same command again: the study resumes and retries the failed trials" in hint(plan)
    assert "fail_fast = 0" in hint(plan)
    plan["resume"]["retry_errored"] = False
    assert "--fresh" in hint(plan) and "retry_errored = false" in hint(plan)
    plan["resume"]["enabled"] = False
    assert "--fresh" in hint(plan)


def test_a_shards_rule_says_it_counted_the_shards_trials_not_the_studys():
    """Each shard's driver counts its own trials: "all 2 trials of the study" was wrong in a
    study of 4 shards, and "no trial reported" too while other shards' trials had."""
    rule = FailFast(k=3, total=2, metric="acc", shard=1)
    one, two = Trial("1", status="PENDING"), Trial("2", status="PENDING")
    error = _text("ValueError: this model cannot be built")
    rule.trial_failed(one, [one, two], error)
    message = rule.trial_failed(two, [one, two], error)
    assert message.startswith("all 2 trials of shard 1 failed with the same error, and no trial of "
                              "shard 1 reported `acc`\n"), message
    assert rule.headline == "stopping shard 1: every trial of it failed the same way; not retrying them"
    rule = FailFast(k=3, total=3, metric="acc", shard=0)
    rule.trial_failed(one, [one], error)
    assert rule.trial_failed(two, [one, two], error).startswith(
        "all 2 trials of shard 0 made so far (of 3) failed with the same error")
    trials = [_failed(f"{i:x}") for i in range(1, 4)]
    rule = FailFast(k=3, total=64, metric="val_loss", shard=2)
    assert _run(rule, trials)[2].startswith("all of the first 3 trials of shard 2 to end failed with the "
                                            "same error, and no trial of shard 2 reported `val_loss`")
    assert rule.headline == "stopping shard 2: its first trials all failed the same way"


PIPELINE = {"getter": {"target": "data:Get"}, "splitter": {"target": "prep.split:Split"},
            "trainer": {"target": "train:Trainer"}}


def _in(path: str, error: str) -> str:
    return (f'Traceback (most recent call last):\n  File "/home/u/study/{path}", line 7, in execute\n'
            f'    y = y.reshape(3)\n{error}\n')


def test_the_hint_names_the_step_whose_file_the_error_is_in():
    """It said "fix the trainer" when the splitter or the getter raised the error."""
    plan = {"resume": {"enabled": True, "retry_errored": True}, "pipeline": PIPELINE}
    assert "fix the splitter `prep.split:Split` and" in hint(plan, _in("prep/split.py", "ValueError: shape"))
    assert "fix the getter `data:Get` and" in hint(plan, _in("data.py", "KeyError: 'y'"))
    assert "fix the trainer and" in hint(plan, _in("train.py", "RuntimeError: expected Long"))
    # a frame outside the steps' modules, or none: the trainer, as it said before
    assert "fix the trainer and" in hint(plan, _in("util.py", "ValueError: x"))
    assert "fix the trainer and" in hint(plan, "RuntimeError: expected Long")


def test_steps_that_share_a_module_leave_the_trainer_named():
    """The file cannot tell which of them raised: the words it said before."""
    plan = {"resume": {"enabled": True, "retry_errored": True},
            "pipeline": {role: {"target": f"toy:{role.title()}"} for role in PIPELINE}}
    assert "fix the trainer and" in hint(plan, _in("toy.py", "ValueError: shape"))


MISSING = ("hpoc.runtime.pipeline.PipelineError: trainer `train:Trainer`: importing `train` failed: "
           "No module named 'timm'\n  help: install `timm` in the environment the study runs in")


def test_an_error_that_says_its_fix_keeps_it_in_the_fail_fast_message_and_hint():
    """A module missing on the nodes only: the stop said "fix the trainer", and the error's
    "install it" stayed in error.txt."""
    plan = {"resume": {"enabled": True, "retry_errored": True}, "pipeline": PIPELINE}
    said = hint(plan, _in("train.py", MISSING))
    assert "every trial failed the same way; do as the error's help says and run the same command again" in said
    assert "fix the trainer" not in said
    rule, error = FailFast(k=3, total=2, metric="acc"), _text(MISSING)
    one, two = Trial("1", status="PENDING"), Trial("2", status="PENDING")
    rule.trial_failed(one, [one, two], error)
    message = rule.trial_failed(two, [one, two], error)
    assert "\n  help: install `timm` in the environment the study runs in" in message


def test_a_dtype_mismatch_names_the_getter_s_data():
    """Integer inputs: torch's "mat1 and mat2 must have the same dtype … Long and Float" was
    told "fix the trainer"; the getter's data is what has the wrong dtype."""
    plan = {"resume": {"enabled": True, "retry_errored": True}, "pipeline": PIPELINE}
    for error in ("RuntimeError: mat1 and mat2 must have the same dtype, but got Long and Float",
                  "RuntimeError: expected scalar type Float but found Double",
                  "RuntimeError: Input type (torch.cuda.DoubleTensor) and weight type "
                  "(torch.cuda.FloatTensor) should be the same"):
        said = hint(plan, _in("train.py", error))
        assert "the data of the getter `data:Get` has a dtype the model does not take" in said, said
        assert "`.float()`" in said and "`astype(np.float32)`" in said and "fix the trainer" not in said
    # the same words for a device mismatch are not the data's dtype
    device = ("RuntimeError: Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) "
              "should be the same")
    assert "fix the trainer and" in hint(plan, _in("train.py", device))
    plan["pipeline"] = {"trainer": {"target": "train:Trainer"}}  # the trainer loads its data
    assert "the trainer's data has a dtype the model does not take" in hint(
        plan, _in("train.py", "RuntimeError: mat1 and mat2 must have the same dtype, but got Long and Float"))


def test_a_missing_objective_metric_says_the_spec_s_objective_may_be_the_fix():
    """`objective minimize val_mse` over a loop that reports `val_loss`: the stop said "fix
    the trainer and run the same command again: the study resumes", but the likely fix is the
    spec's objective, and a spec with another objective does not resume (another plan)."""
    plan = {"resume": {"enabled": True, "retry_errored": True}, "pipeline": PIPELINE}
    error = ("hpoc.runtime.returns.TrainerError: the trainer reported `perf`, `train_loss`, `val_loss` "
             "but not `val_mse`, the objective's metric; did you mean `val_loss`?")
    said = hint(plan, _text(error))
    assert ("every trial failed the same way; report `val_mse` from the trainer (or name a metric it "
            "reports in the spec's `objective` and run with --fresh: another objective is another plan) "
            "and run the same command again: the study resumes") in said, said
    assert "fix the trainer" not in said
    # an objective the loop left out for a reason of its own: the trainer is what to fix
    other = ("hpoc.runtime.returns.TrainerError: `val_accuracy`, the objective's metric, is missing: "
             "no validation batch had outputs to score")
    assert "fix the trainer and" in hint(plan, _text(other))


def test_a_linear_layer_of_the_wrong_width_says_which_widths():
    """torch's "mat1 and mat2 shapes cannot be multiplied (32x4 and 3x16)", raised inside
    hpoc's loop with no line of the study's own: "fix the trainer" did not say what."""
    plan = {"resume": {"enabled": True, "retry_errored": True}, "pipeline": PIPELINE}
    said = hint(plan, _text("RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x4 and 3x16)"))
    assert ("fix the trainer's model: a `Linear` layer (or a matmul) takes 3 input features and gets 4; "
            "build it for the inputs it gets and run the same command again") in said, said
