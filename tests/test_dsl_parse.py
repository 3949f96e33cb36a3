"""Parser: the AST it builds, spans, comments, and every kind of syntax/reading error."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from hpoc.dsl import ast as A
from hpoc.dsl.parse import MAX_BYTES, MAX_DEPTH, parse, read_spec
from hpoc.errors import Diagnostic, SpecError, SpecSyntaxError


def syntax_error(text: str) -> Diagnostic:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text, "s.hpo")
    (d,) = info.value.diagnostics
    return d


def error_at(text: str) -> tuple[str, int | None, int | None, str, str | None]:
    """(code, line, column, message, help) of the one syntax error in `text`."""
    d = syntax_error(text)
    return d.code, d.line, d.col, d.message, d.help


# ------------------------------------------------------------------------------ AST


def test_values_and_items() -> None:
    study = parse(
        'study "x"\n'
        "search optuna { sampler = tpe, seed = 0 }\n"
        "space {\n"
        '  lr = loguniform(1e-5, 1e-3, base = 2)\n'
        '  m = uniform(0.5, 0.9) if opt == "sgd"\n'
        "  if opt in [\"a\", 1] { z = 2h; mem = 64G; t = 02:00:00 }\n"
        "  g.h = [1, -2.5, true, false, null, { k = \"v\" }]\n"
        "}\n"
        "objective { minimize val_loss  maximize \"val/acc\" }\n"
        "logger tensorboard\n",
        "s.hpo",
    )
    study_block, search, space, objective, logger = study.items
    assert study_block == A.Block("study", A.String("x"), None)
    assert search.label == A.Ref("optuna") and search.body == (
        A.Setting("sampler", A.Ref("tpe")),
        A.Setting("seed", A.Number(0)),
    )
    lr, m, cond, g = space.body
    assert lr.value == A.Call(
        "loguniform", (A.Number(1e-5), A.Number(1e-3)), (A.Pair("base", A.Number(2)),)
    )
    assert lr.value.args[0].text == "1e-5"
    assert m.condition == A.Condition("opt", (A.String("sgd"),), "==")
    assert isinstance(cond, A.IfBlock) and cond.condition.op == "in"
    z, mem, t = cond.body
    assert z.value == A.Duration(7200, "2h") and mem.value == A.Size("64G") and t.value == A.Clock("02:00:00")
    assert g.key == "g.h"
    assert g.value == A.List(
        (A.Number(1), A.Number(-2.5), A.Bool(True), A.Bool(False), A.Null(), A.Map((A.Pair("k", A.String("v")),)))
    )
    assert objective == A.Objective((A.Goal("min", "val_loss"), A.Goal("max", "val/acc")), braced=True)
    assert logger == A.Block("logger", A.Ref("tensorboard"), None)


def test_import_paths_and_durations() -> None:
    (s,) = parse("trainer = pkg.mod:Outer.Inner(x = 1)").items
    assert s.value.func == "pkg.mod:Outer.Inner"
    for text, seconds in [("90m", 5400), ("1h30m", 5400), ("1.5d", 129600), ("30s", 30)]:
        (s,) = parse(f"t = {text}").items
        assert s.value.seconds == seconds


def test_keywords_are_contextual() -> None:
    # `if`/`objective`/`minimize` are only keywords where they can start something.
    (s,) = parse("a = { if = 1, objective = 2, minimize = 3, in = 4 }").items
    assert [p.key for p in s.value.entries] == ["if", "objective", "minimize", "in"]


def test_spans_point_at_source() -> None:
    study = parse('study "x"\nspace {\n  lr = uniform(0, 1)\n}\n', "s.hpo")
    (lr,) = study.items[1].body
    assert lr.span == A.Span("s.hpo", 3, 3, 3, 21)
    assert lr.key_span == A.Span("s.hpo", 3, 3, 3, 5)
    assert lr.value.func_span == A.Span("s.hpo", 3, 8, 3, 15)


def test_comments_are_attached() -> None:
    study = parse(
        "# head\nstudy \"x\"  # name\nspace {  # the space\n  # lead\n  a = [1,\n  # inside\n  2]  # tail\n  # dangling\n}\n# end\n"
    )
    st, space = study.items
    assert st.comments == ("# head",) and st.trailing == "# name"
    assert space.trailing == "# the space"
    (a,) = space.body
    assert a.comments == ("# lead",) and a.trailing == "# tail"
    assert a.verbatim == ("[1,", "# inside", "2]")  # the value as written keeps its comment
    assert space.end_comments == ("# dangling",)
    assert study.end_comments == ("# end",)


def test_ast_from_python() -> None:
    v = A.from_python({"a": [1, 2.5, "x", True, None], "b": {}})
    assert v == A.Map(
        (
            A.Pair("a", A.List((A.Number(1), A.Number(2.5), A.String("x"), A.Bool(True), A.Null()))),
            A.Pair("b", A.Map(())),
        )
    )
    assert A.to_python(v) == {"a": [1, 2.5, "x", True, None], "b": {}}
    with pytest.raises(ValueError):
        A.from_python(float("nan"))


# --------------------------------------------------------------------- syntax errors


def test_unexpected_token_lists_expected_words() -> None:
    d = syntax_error('study "x"\ntrials { num_samples: 3 }')
    assert (d.code, d.line, d.col) == ("HP101", 2, 21)
    assert d.message == "unexpected `:`, expected a name, a string, `=`, `{` or `.`"
    assert d.help == "settings are written `key = value`, not `key: value`"
    assert "trials { num_samples: 3 }" in d.render()


def test_missing_equals() -> None:
    d = syntax_error("trials {\n  num_samples 8\n}")
    assert (d.line, d.col) == (2, 15)
    assert d.message.startswith("unexpected number `8`")
    assert d.help == "settings are written `key = value`"


def test_missing_comma_in_call() -> None:
    d = syntax_error("space { a = uniform(0 1) }")
    assert (d.line, d.col, d.message) == (1, 23, "unexpected number `1`, expected `)` or `,`")
    assert d.help == "separate items with `,`"


@pytest.mark.parametrize("text, where, help", [
    ('slurm {\n  extra = ["--exclusive"\n  partition = "gpu"\n}', (3, 3),
     "close the `[` of line 2 (column 11) with `]`: a setting starts here"),
    ("space {\n  lr = loguniform(1e-4, 1e-2\n  epochs = 2\n}", (3, 3),
     "close the `(` of line 2 (column 18) with `)`: a setting starts here")])
def test_a_bracket_left_open_before_the_next_setting_is_named(text, where, help) -> None:
    """`lr = loguniform(1e-4, 1e-2` and `epochs = 2` on the next line got "separate items
    with `,`", which would make `epochs = 2` an argument: the `)` was what was missing."""
    d = syntax_error(text)
    assert ((d.line, d.col), d.help) == (where, help)
    assert syntax_error('slurm {\n  extra = ["a"\n  "b"]\n}').help == "separate items with `,`"
    kwargs = 'pipeline {\n  trainer = t:T(lr = 1\n  epochs = 2)\n}'  # a `,` missing, or a `)`: not said
    assert syntax_error(kwargs).help == "separate items with `,`"


@pytest.mark.parametrize("word", ["if", "objective"])
def test_a_setting_named_like_a_keyword_is_shown_quoted(word: str) -> None:
    """`space { if = 1 }` got "unexpected `=`" and no hint (`objective = 2` the hint to write
    an objective section), though the language takes such a key quoted."""
    assert error_at(f"space {{\n  {word} = 1\n}}")[4] == (
        f'`{word}` begins {"a condition" if word == "if" else "the objective"}; a setting of that name is '
        f'quoted: `"{word}" = 1`')
    assert error_at("objective = val_loss")[4] == "write `objective minimize val_loss` or `objective maximize val_accuracy`"


def test_a_stray_word_after_a_value_is_named_not_the_next_line() -> None:
    """`x = choice(1, 2) stray` was read as the start of a block `stray y`, and the error
    pointed at the next line's `=`; in every section, in a map, and at the end of the file."""
    for src, line, col in (
        ("space {\n  x = choice(1, 2) stray\n  y = uniform(0, 1)\n}", 2, 20),
        ("space {\n  x = choice(1, 2) stray\n}", 2, 20),
        ("trials {\n  num_samples = 8 stray  # why\n\n  max_concurrent = 2\n}", 2, 19),
        ("slurm {\n  time = 2h stray\n  mem = 64G\n}", 2, 13),
        ('pipeline {\n  trainer = m:f(args = { a = 1 stray\n b = "x" })\n}', 2, 32),
        ('pipeline {\n  trainer = m:f\n  args = { a = [1, 2] stray\n  b = 2 }\n}', 3, 23),
        ("seed = 1 stray\nworkers = 2", 1, 10),
        ("seed = 1 stray\n", 1, 10),
        ("seed = 1 stray\nsearch random\n", 1, 10),
        ("objective minimize val_loss stray\nseed = 1", 1, 29),
    ):
        code, *where, message, help = error_at(src)
        assert (code, *where) == ("HP101", line, col), src
        assert message == "unexpected word `stray` after the value", src
        assert help and "one setting per line" in help


def test_single_equals_in_condition() -> None:
    d = syntax_error("space { a = uniform(0, 1) if b = 1 }")
    assert (d.line, d.col, d.help) == (1, 32, "compare with `==`")


def test_conditions_joined_with_and_or_are_named_where_they_are_joined() -> None:
    """`if a == 1 and b == 2` failed at the second `==`, "expected a name, a string, ...":
    the grammar had read `and b` as a block."""
    for src, col, word in (
        ('space { m = uniform(0, 1) if opt == "adam" and lr == 1 }', 44, "and"),
        ('space { m = uniform(0, 1) if opt == "a or b" or opt == "c" }', 46, "or"),
        ("space { m = uniform(0, 1) if opt in [a] && x == 1 }", 41, "&&"),
    ):
        d = syntax_error(src)
        assert (d.code, d.line, d.col, d.message) == ("HP101", 1, col, f"conditions cannot be combined with `{word}`"), src
        assert d.help.startswith("a parameter depends on one condition")


def test_an_unexpected_character_says_what_may_follow_there() -> None:
    """After `2` in a call the lexer allowed `}`, `]`, names and strings (states shared with
    maps and lists); the parser accepts only `,` or `)` there."""
    d = syntax_error("space { t = randint(0, 2**40) }")
    assert (d.code, d.col, d.message) == ("HP102", 25, "unexpected character `*`, expected `)` or `,`")
    assert d.help == "values are literals, not expressions: write the result"
    assert syntax_error("space { t = [1, 2/3] }").message == "unexpected character `/`, expected `]` or `,`"


def test_a_comment_in_another_language_s_spelling_is_told_to_start_with_a_hash() -> None:
    """`// my study` (C, JSON5) or `/* */` had no help at all, and `lr = 1e-3 // note` was
    told that values are literals, not expressions."""
    for src, col in (("// my study\nstudy \"x\"\n", 1), ("/* my study */\nstudy \"x\"\n", 1),
                     ('study "x"\ntrials { num_samples = 4 // four\n}\n', 26)):
        d = syntax_error(src)
        assert (d.code, d.col, d.help) == ("HP102", col, "comments start with `#`"), src


def test_a_setting_written_with_double_equals_is_told_to_use_one() -> None:
    d = syntax_error('study "x"\nspace {\n  epochs == 4\n}\n')
    assert (d.code, d.line, d.col) == ("HP101", 3, 11)
    assert d.help == "a setting is `key = value`, with one `=` (`==` compares, after `if`)"


def test_a_domain_with_brackets_is_told_to_call_it() -> None:
    """`choice[32, 64]`: a newcomer's guess at a list of choices, with no help."""
    d = syntax_error('study "x"\nspace {\n  batch_size = choice[32, 64]\n}\n')
    assert (d.code, d.line, d.col) == ("HP101", 3, 22)
    assert d.help == "arguments go in parentheses: `choice(32, 64)`"


def test_mismatched_and_unmatched_brackets() -> None:
    d = syntax_error("space {\n  a = [1, 2 }")
    assert (d.line, d.col) == (2, 13)
    assert d.message == "mismatched `}`: `[` opened at 2:7 is still open"
    d = syntax_error('study "x" }')
    assert (d.line, d.col, d.message) == (1, 11, "unmatched `}`: nothing is open here")


def test_unclosed_block_points_at_opening() -> None:
    assert error_at('study "x"\nspace {\n  a = 1\n') == (
        "HP103", 2, 7, "unclosed `{`: the file ends before it is closed", "add `}` where the block should end"
    )


def test_unclosed_block_says_where_the_next_section_starts() -> None:
    """A `}` forgotten in the middle of a file: the hint named no place, though the next
    section in column 1 shows where the block was meant to end."""
    text = 'study "x"\nspace {\n  a = 1\n  b = choice(1, 2)\n\n# the objective\nobjective minimize l\ntrials { n = 1 }\n'
    assert error_at(text) == ("HP103", 2, 7, "unclosed `{`: the file ends before it is closed",
                              "add `}` before line 7, where `objective` starts in column 1 as a section does")
    assert error_at('space { a = 1\nsearch random\n')[4] == (
        "add `}` before line 2, where `search` starts in column 1 as a section does")
    # an inner block closed in column 1 is not the place
    assert error_at('space {\n  if o == a {\n    x = 1\n}\ntrials { n = 1 }\n')[4] == (
        "add `}` before line 5, where `trials` starts in column 1 as a section does")
    # a block written without indentation: column 1 tells nothing
    assert error_at("space {\na = 1\ntrials { n = 1 }\n")[4] == "add `}` where the block should end"


def test_a_section_written_with_an_equals_sign_says_it_takes_none() -> None:
    """`search = optuna { ... }` and `scheduler asha = { ... }` (TOML's, HCL's way) got
    "unexpected `{`" / "unexpected `=`" and a list of tokens, with no hint."""
    d = syntax_error('study "x"\nsearch = optuna { seed = 0 }\n')
    assert (d.line, d.col, d.help) == (2, 17, "a section takes no `=`: write `search optuna { ... }`")
    d = syntax_error('study "x"\nscheduler asha = { max_t = 10 }\n')
    assert (d.line, d.col, d.help) == (2, 16, "a section takes no `=`: write `scheduler asha { ... }`")


def test_a_pasted_dash_or_invisible_character_is_named() -> None:
    """`uniform(–1, 1)` copied from a paper (an en dash, or the minus sign U+2212), and a
    zero-width space from a web page: "unexpected character" and no hint what to type."""
    assert error_at("space { x = uniform(\u20131, 1) }")[4] == (
        "write `-`: `\u2013` is an en dash (U+2013), not the ASCII minus sign")
    assert error_at("space { x = uniform(\u22121, 1) }")[4] == (
        "write `-`: `\u2212` is a minus sign (U+2212), not the ASCII minus sign")
    assert error_at("space { x = uniform(0,\u200b1) }")[4] == (
        "this is an invisible zero width space (U+200B): delete it")


@pytest.mark.parametrize("written, plain", [("\uff1d", "="), ("\uff0c", ","), ("\uff08", "(")])
def test_full_width_punctuation_is_shown_with_its_ascii_character(written: str, plain: str) -> None:
    """`num_samples ＝ 4` (an input method's full-width `=`) got "unexpected character" and no
    hint, while full-width letters and digits had one."""
    help = error_at(f"space {{ x {written} uniform(0, 1) }}" if plain == "=" else
                    f"space {{ x = uniform(0{written} 1) }}" if plain == "," else f"space {{ x = uniform{written}0, 1) }}")[4]
    assert help is not None and help.startswith(f"write `{plain}`: `{written}` is fullwidth ")


def test_a_step_written_as_a_relative_path_is_shown_as_a_module() -> None:
    """`trainer = ./models/net.py:Net` got "unexpected `.`" and no hint."""
    d = syntax_error("pipeline { trainer = ./models/net.py:Net }")
    assert (d.col, d.help) == (22, "write `models.net:Net`: a module is named as Python imports it, "
                                   "from the spec's directory")


def test_a_step_written_as_a_path_from_a_folder_is_shown_as_a_module() -> None:
    """`trainer = src/train:Net` (or `src/train.py:Net`) was told that values are literals,
    not expressions."""
    for src in ("pipeline { trainer = src/train:Net }", "pipeline { trainer = src/models/train.py:Net }"):
        d = syntax_error(src)
        assert (d.col, d.help) == (25, f"write `{'src.train' if 'models' not in src else 'src.models.train'}"
                                       ":Net`: a module is named as Python imports it, from the spec's "
                                       "directory"), src
    # a division is still not a value
    assert syntax_error("space { t = [1, 2/3] }").help == "values are literals, not expressions: write the result"


def test_a_negative_duration_or_size_is_said_where_it_is_written() -> None:
    """`time_limit = -5m` read as `-5` then a key `m`: "unexpected `}`" at the block's end,
    which named neither the value nor the sign."""
    d = syntax_error('study "x"\ntrials { time_limit = -5m }\n')
    assert (d.code, d.line, d.col, d.message) == ("HP101", 2, 23, "a duration cannot be negative: `-5m`")
    assert d.help == "write `5m`"
    d = syntax_error('study "x"\nslurm { mem = -64G }\n')
    assert (d.line, d.col, d.message, d.help) == (2, 15, "a size cannot be negative: `-64G`", "write `64G`")
    assert parse('study "x"\nspace { lr = -1e-3 }\n', "s.hpo")  # an exponent is still a number


def test_a_key_with_a_hyphen_is_told_to_write_an_underscore_or_quote_it() -> None:
    """`batch-size = choice(32, 64)`, as YAML and CLI flags spell it: no help at all."""
    d = syntax_error('study "x"\nspace {\n  batch-size = choice(32, 64)\n}\n')
    assert (d.code, d.line, d.col) == ("HP102", 3, 8)
    assert d.help == 'names are letters, digits and `_`: write `batch_size`, or quote the key: `"batch-size"`'
    # a value's bare word with a hyphen is quoted
    for value in ("leaky-relu", "choice(relu, leaky-relu)"):
        d = syntax_error(f'study "x"\nspace {{\n  act = {value}\n}}\n')
        assert d.help == 'a bare word is letters, digits and `_`: quote it, `"leaky-relu"`', value


@pytest.mark.parametrize("written, meant", [("2hours", "2h"), ("120min", "120m"), ("90sec", "90s"),
                                             ("3days", "3d"), ("1h30", "1h30m"), ("2hrs", "2h")])
def test_a_duration_with_a_spelt_out_unit_is_shown_with_its_letter(written: str, meant: str) -> None:
    """`time_budget = 120min` got the list of every unit, not the one meant."""
    assert error_at(f"trials {{ time_budget = {written} }}")[4] == f"write `{meant}`"


@pytest.mark.parametrize("written, help", [
    ("1:00:00:00", "a walltime has at most three fields: for days write `1-00:00:00` (`D-HH:MM:SS`)"),
    ("2-12:00:00:00", "a walltime has at most three fields: `D-HH:MM:SS`, `HH:MM:SS` or `MM:SS`")])
def test_a_walltime_with_a_field_too_many_says_how_days_are_written(written: str, help: str) -> None:
    """`time = 1:00:00:00` (days as a fourth field, as some schedulers write them) got
    "unexpected `:`" and no hint."""
    assert error_at(f"slurm {{ time = {written} }}")[4] == help


def test_a_duration_in_two_words_is_one() -> None:
    assert error_at("trials { time_budget = 1h 30m }")[4] == "write `1h30m`: a duration is one word"


@pytest.mark.parametrize("written, help", [
    ("64GiB", "write `64G`: SLURM's units are binary, its G is a GiB"),
    ("64Gi", "write `64G`: SLURM's units are binary, its G is a GiB"),
    ("64 GB", "write `64GB`"),
    ("64 GiB", "write `64G`"),
    ("1.5T", "write `1536G`: a size is a whole number of its unit"),
    ("0.5G", "write `512M`: a size is a whole number of its unit"),
    ("64g", "write `64G`: a size's unit is a capital letter (`\"64g\"` as a string is read too)"),
    ("64gb", "write `64GB`: a size's unit is a capital letter (`\"64gb\"` as a string is read too)"),
    ("512k", "write `512K`: a size's unit is a capital letter (`\"512k\"` as a string is read too)"),
])
def test_a_memory_size_as_other_tools_write_it_is_shown_as_slurm_takes_it(written: str, help: str) -> None:
    """`mem = 64GiB` (as `free -h` prints it), `64 GB` or `1.5T`: the hint listed the
    units, or there was none, or it said `1536M rather than 1.5G` whatever was written."""
    assert error_at(f"slurm {{ mem = {written} }}")[4] == help


@pytest.mark.parametrize("line", ["logger mlflow, tensorboard", "logger [mlflow, tensorboard]",
                                  "logger mlflow tensorboard"])
def test_several_loggers_on_one_line_are_shown_one_per_line(line: str) -> None:
    """`logger mlflow, tensorboard` ended in "unexpected end of file" with no hint, and the
    list form was told that settings are written `key = value`."""
    assert error_at(f'study "x"\n{line}\n')[4] == (
        "one `logger` per kind, each on its own line: `logger mlflow`, `logger tensorboard`")


def test_unexpected_end_of_file() -> None:
    d = syntax_error("trials { num_samples =")
    # the `{` is still open: report where it was opened
    assert (d.code, d.line, d.col) == ("HP103", 1, 8)
    d = syntax_error("x =")
    assert (d.code, d.line, d.col) == ("HP103", 1, 4)
    assert d.message.startswith("unexpected end of file, expected a value")


@pytest.mark.parametrize(("src", "line", "col", "words"), [
    ('study "x"\nspace { a = 1 }\nextra stuff here\n', 3, 1, "extra stuff here"),
    ('study "x"\nspace { a = 1 }\n  extra  # to do\n\n', 3, 3, "extra"),
    ('study "x"\ntrials { num_samples = 2 }\nnot done yet', 3, 1, "not done yet"),
])
def test_stray_words_ending_the_file_are_shown_where_they_start(src: str, line: int, col: int, words: str) -> None:
    """They were "unexpected end of file" at the end of their line: the parser read them
    as the start of a block and ran out of file."""
    d = syntax_error(src)
    assert (d.code, d.line, d.col, d.end_col - d.col) == ("HP101", line, col, len(words))
    assert d.message == f"`{words}` is neither a setting nor a block"
    assert d.help == "a setting is written `key = value`, a block `kind { ... }`; a note goes after `#`"


def test_unexpected_characters() -> None:
    d = syntax_error("study 'x'")
    assert (d.code, d.line, d.col, d.help) == ("HP102", 1, 7, 'strings use double quotes: "like this"')
    d = syntax_error('study "x\n')
    assert (d.code, d.col, d.message) == ("HP102", 7, "unterminated string")
    d = syntax_error("a = @")
    assert (d.col, d.message) == (5, "unexpected character `@`, expected a value, a name or `{`")


def test_python_spellings_get_a_hint() -> None:
    d = syntax_error("objective = val_loss")
    assert d.help == "write `objective minimize val_loss` or `objective maximize val_accuracy`"


def test_invalid_string_escape_and_numbers() -> None:
    d = syntax_error('study "a\\q"')
    assert (d.code, d.line, d.col, d.message) == ("HP105", 1, 7, "invalid escape sequence in string")
    assert d.source_line == 'study "a\\q"'
    d = syntax_error("a = 1e999")
    assert (d.code, d.col, d.message) == ("HP105", 5, "number is out of range")
    d = syntax_error("a = " + "9" * 5000)
    assert (d.code, d.message) == ("HP105", "number has too many digits")
    d = syntax_error('a = "x\\ud800"')  # half a pair: no character, cannot be written as UTF-8
    assert (d.code, d.col, d.message) == ("HP105", 5, "unpaired surrogate escape in string")
    assert parse('a = "\\ud83d\\ude00"', "s.hpo").items[0].value.value == "\U0001F600"


@pytest.mark.parametrize(("text", "col", "help"), [
    ("a = ２", 5, "write `2`: numbers are written with ASCII digits"),  # a Japanese keyboard
    ("time = ０１:００:００", 8, "write `0`: numbers are written with ASCII digits"),
    ("a = ٣", 5, "write `3`: numbers are written with ASCII digits"),
    ("a = choice(“x”, “y”)", 12, 'strings use straight double quotes: "like this"'),  # a word processor
    ("a = 1\xa0", 6, "this is a no-break space (U+00A0): write a plain space"),
    ("épochs = 6", 1, 'names are ASCII letters, digits and `_`; other text goes in a string: "épochs"'),
    ("a = 数字", 5, 'names are ASCII letters, digits and `_`; other text goes in a string: "数字"'),
    ("l\u0435arning_rate = 1", 2, "`\u0435` is cyrillic small letter ie, which looks like an ASCII letter: retype it"),
    ("time = 2ｈ", 9, "write `h`: `ｈ` is fullwidth latin small letter h, not an ASCII letter"),
])
def test_non_ascii_lookalikes_get_what_to_write(text: str, col: int, help: str) -> None:
    d = syntax_error(text)
    assert (d.code, d.line, d.col, d.help) == ("HP102", 1, col, help)


@pytest.mark.parametrize(("text", "col", "message", "help"), [
    # `1e400` is infinity to Python: the largest number a float holds is what can be written
    ("a = 1e400", 5, "number is out of range", "the largest number is 1.7976931348623157e+308"),
    ("a = -1e999", 5, "number is out of range", "the largest number is 1.7976931348623157e+308"),
    # `1e-400` would silently be 0 (a log bound of 0, a learning rate of 0)
    ("lr = loguniform(1e-400, 1e-3)", 17, "number `1e-400` is too small: it would be 0",
     "the smallest number above 0 is 5e-324 (write `0` if zero is meant)"),
])
def test_a_number_a_float_cannot_hold_says_what_can(text: str, col: int, message: str, help: str) -> None:
    d = syntax_error(text)
    assert (d.code, d.line, d.col, d.message, d.help) == ("HP105", 1, col, message, help)


def test_zero_with_an_exponent_is_zero() -> None:
    assert parse("a = 0e-400", "s.hpo").items[0].value.value == 0.0


def test_a_subnormal_number_is_kept_as_written() -> None:
    """`1e-310` is below the smallest normal float but holds its digits (it prints back as
    written, as YAML's and JSON's readers keep it): not refused as a 0 would be."""
    assert parse("a = -1e-310", "s.hpo").items[0].value.value == -1e-310
    assert parse("a = 0.000e5", "s.hpo").items[0].value.value == 0.0
    assert parse("a = 2.2250738585072014e-308", "s.hpo").items[0].value.value > 0


@pytest.mark.parametrize(("text", "col", "message", "help"), [
    ("batch = 0x10", 9, "`0x10` is a hexadecimal literal: numbers here are decimal", "write `16`"),
    ("mask = 0b101", 8, "`0b101` is a binary literal: numbers here are decimal", "write `5`"),
    ("mode = 0o755", 8, "`0o755` is an octal literal: numbers here are decimal", "write `493`"),
    ("a = [1, 0XFF]", 9, "`0XFF` is a hexadecimal literal: numbers here are decimal", "write `255`"),
])
def test_hex_octal_and_binary_literals_give_the_decimal(text: str, col: int, message: str, help: str) -> None:
    d = syntax_error(text)
    assert (d.code, d.line, d.col, d.message, d.help) == ("HP101", 1, col, message, help)


def test_detached_if_clause() -> None:
    assert error_at("space {\n  a = 1\n  if b == 1\n}") == (
        "HP106", 3, 3, "`if` clause is not attached to a setting",
        "write the condition after a setting on the same line, or give it a `{ ... }` body",
    )


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    d = syntax_error("x = " + "[" * 100_000)
    assert (d.code, d.line, d.col) == ("HP104", 1, 5 + MAX_DEPTH)
    assert parse("x = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))


def test_tabs_are_kept_in_the_caret_line() -> None:
    d = syntax_error("trials {\n\t\tnum_samples: 3\n}")
    lines = d.render().splitlines()
    assert lines[1] == " 2 | \t\tnum_samples: 3"
    assert lines[2] == "   | \t\t           ^"


def test_the_caret_counts_terminal_cells() -> None:
    """Wide characters take two cells, combining accents none: the caret still points."""
    d = syntax_error('a = "日本語" b')  # at the end of the line: 5 + 2 * 3 + 3 cells before it
    assert d.render().splitlines()[2] == "   | " + " " * 14 + "^"
    d = syntax_error('a = "cafe\u0301" 1 )')
    assert d.render().splitlines()[2] == "   | " + " " * 11 + "^"
    d = syntax_error('x = choice(1 "日本")')  # a wide token gets a caret per cell
    assert d.render().splitlines()[2] == "   | " + " " * 13 + "^" * 6


def test_control_characters_in_the_shown_line_are_escaped() -> None:
    """A stray escape or NUL (a paste, a binary file) is shown, not sent to the terminal
    (`\x1b[2J` would clear it, a bidi override reorder what it shows); the caret still points."""
    d = syntax_error('a = 1 b = "\x1b[2J\u202e" 7 )')
    shown, caret = d.render().splitlines()[1:3]
    assert shown == ' 1 | a = 1 b = "\\x1b[2J\\u202e" 7 )'
    assert caret == "   | " + " " * (shown.index("7 )") - 5) + "^"
    assert "\x1b" not in d.render() and "\u202e" not in d.render()
    d = syntax_error("trials {\n\tnum_samples = 1 \x00 }")
    assert d.render().splitlines()[1:3] == [" 2 | \tnum_samples = 1 \\x00 }", "   | \t" + " " * 16 + "^^^^"]


def test_a_long_line_is_cut_around_the_caret_and_marked_where_cut() -> None:
    d = syntax_error('a = "' + "x" * 10_000 + '" 7 )')
    shown, caret = d.render().splitlines()[1:3]
    assert shown.startswith(" 1 | …x") and shown.endswith('xxx" 7 )')  # the line ends here: no `…`
    assert caret.index("^") == shown.index("7") and len(shown) < 200
    d = syntax_error("a = 1 ) " + "# " + "y" * 10_000)
    shown, caret = d.render().splitlines()[1:3]
    assert shown.startswith(" 1 | a = 1 ) # y") and shown.endswith("y…")
    assert caret.index("^") == shown.index(")")


# --------------------------------------------------------------------------- reading


def test_read_errors(tmp_path: Path) -> None:
    def read_error(path: Path) -> Diagnostic:
        with pytest.raises(SpecSyntaxError) as info:
            read_spec(path)
        return info.value.diagnostics[0]

    d = read_error(tmp_path / "missing.hpo")
    assert (d.code, d.line, d.message) == ("HP001", None, "no such file")
    assert d.render().startswith(f"{tmp_path / 'missing.hpo'}: error: no such file [HP001]")
    assert read_error(tmp_path).message == "is a directory, not a study file"
    big = tmp_path / "big.hpo"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    assert read_error(big).code == "HP002"
    bad = tmp_path / "bad.hpo"
    bad.write_bytes('study "x"\nspace { a = "caf\xe9" }\n'.encode("latin-1"))
    d = read_error(bad)
    assert (d.code, d.line, d.col) == ("HP003", 2, 17)
    assert d.message == "file is not valid UTF-8 (byte 0xe9)"
    assert d.source_line == 'space { a = "caf\ufffd" }'


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path: Path, encoding: str) -> None:
    """Windows editors save "Unicode" as UTF-16: say so, not show a line of NULs."""
    spec = tmp_path / "s.hpo"
    spec.write_bytes(("\ufeff" if encoding.endswith("be") else "").encode(encoding)
                     + 'study "x"\n'.encode(encoding))
    with pytest.raises(SpecSyntaxError) as info:
        read_spec(spec)
    d = info.value.diagnostics[0]
    assert (d.code, d.line, d.message) == ("HP003", None, "file is UTF-16, not UTF-8")
    assert d.help == "save the file as UTF-8" and "\x00" not in d.render()


def test_a_dash_is_not_taken_for_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecSyntaxError) as info:
        read_spec("-")
    d = info.value.diagnostics[0]
    assert (d.code, d.message) == ("HP001", "no such file")
    assert d.help == ("studies are read from files, not from standard input (only `hpoc fmt -` reads one): save it "
                      "to a file and pass its path")
    (tmp_path / "-").write_text('study "x"\n')  # a file named `-` is still read
    assert read_spec("-")[0] == 'study "x"\n'


def test_bom_and_crlf(tmp_path: Path) -> None:
    spec = tmp_path / "s.hpo"
    spec.write_bytes('\ufeffstudy "x"\r\nspace {\r\n  a = 1\r\n}\r\n'.encode())
    text, digest = read_spec(spec)
    study = parse(text)
    assert study.items[0].label == A.String("x") and len(digest) == 64


def test_errors_pickle() -> None:
    with pytest.raises(SpecError) as info:
        parse("trials { num_samples: 3 }", "s.hpo")
    err = info.value
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is SpecSyntaxError
    assert clone.diagnostics == err.diagnostics
    assert str(clone) == str(err)


def test_misspelt_keywords_get_did_you_mean() -> None:
    d = syntax_error('study "x"\nobjectiv minimize val_loss\n')
    assert (d.code, d.line, d.col, d.help) == ("HP103", 2, 27, "did you mean `objective`?")
    d = syntax_error("space {\n  a = choice(1, 2)\n  b = uniform(0, 1) iff a == 1\n}")
    assert (d.line, d.col, d.help) == (3, 27, "did you mean `if`?")
    d = syntax_error("space { b = uniform(0, 1) when a == 1 }")
    assert d.help == "did you mean `if`?"
    d = syntax_error("objective max val_accuracy")
    assert (d.col, d.message, d.help) == (
        11, "unexpected name `max`, expected `{`, `minimize` or `maximize`", "did you mean `maximize`?",
    )


def test_name_glued_to_a_number() -> None:
    d = syntax_error("trials {\n  time_budget = 2hrs\n  num_samples = 3\n}")
    assert (d.line, d.col, d.message) == (2, 18, "unexpected name `hrs` right after the number `2`")
    d = syntax_error("slurm {\n  mem = 1.5G\n}")
    assert (d.line, d.col, d.message) == (2, 12, "a size must be a whole number, not `1.5G`")
    d = syntax_error("slurm { time = 10, mem = 64 G }")
    assert (d.col, d.message, d.help) == (29, "space between the number `64` and its unit `G`", "write `64G`")
    d = syntax_error("a = 1e3x")
    assert (d.col, d.message) == (8, "unexpected name `x` right after the number `1e3`")
    d = syntax_error("trials { num_samples = 1_000 }")
    assert (d.col, d.message, d.help) == (
        24, "digits are not grouped with `_` in `1_000`", "write `1000`")
    d = syntax_error("a = 3_gpus")
    assert (d.col, d.message) == (6, "unexpected name `_gpus` right after the number `3`")


def test_an_exponent_is_not_a_glued_name() -> None:
    """The error is the missing comma; `1e-3` above it is a number, not `1` and a name `e`."""
    d = syntax_error("space {\n  lr = loguniform(1e-5, 1E+3)\n  bs = choice(32 64)\n}")
    assert (d.line, d.col, d.message) == (3, 18, "unexpected number `64`, expected `)` or `,`")
    d = syntax_error("space { x = 1e-3")
    assert (d.code, d.message) == ("HP103", "unclosed `{`: the file ends before it is closed")
    d = syntax_error("space { a = 1 m = uniform(0, 1) b = choice(1 2) }")  # `m` is a setting here
    assert (d.col, d.message) == (46, "unexpected number `2`, expected `)` or `,`")


# ----------------------------------------------------- several syntax errors at once


def syntax_errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text, "s.hpo")
    return [(d.line, d.col, d.code) for d in info.value.diagnostics]


def test_each_broken_top_level_item_reports_its_first_error() -> None:
    text = (
        'study "x"\n'
        "space {\n"
        "  optimizer {\n"
        '    name = choice("adam", "sgd"\n'      # `)` forgotten: `}` closes it
        "  }\n"
        "}\n"
        "# a comment with a { in it\n"
        "trials { num_samples = = 2 }\n"
        "objective\n"
        "  maximize val_accuracy\n"              # indented: the same item, no error
        "resources { workers = 2 }\n"
        'slurm { time = 2:00:00: }\n'
    )
    errs = syntax_errors(text)
    assert errs == [(5, 3, "HP101"), (8, 24, "HP101"), (12, 23, "HP101")]
    with pytest.raises(SpecSyntaxError) as info:
        parse(text, "s.hpo")
    later = info.value.diagnostics[1]
    assert later.source_line == "trials { num_samples = = 2 }" and later.file == "s.hpo"


def test_a_block_left_open_gives_no_follow_on_errors() -> None:
    # A missing `}` moves every later item into the block: one error, not one per section.
    text = 'study "x"\nspace {\n  a = uniform(0, 1)\ntrials { num_samples = 2 }\nresources { workers = 1 }\n'
    assert len(syntax_errors(text)) == 1


def test_syntax_errors_are_capped() -> None:
    errs = syntax_errors("a = = 1\n" * 100)
    assert len(errs) == 1 + 20
    assert [line for line, _, _ in errs] == list(range(1, 22))


def test_numbers_as_other_languages_write_them_get_the_hpo_spelling() -> None:
    d = syntax_error("space { c = .5 }")
    assert (d.col, d.help) == (13, "write `0.5`")
    d = syntax_error("space { c = 5. }")
    assert (d.col, d.help) == (14, "write `5.0` or `5`")
    d = syntax_error("space { c = +3 }")
    assert (d.col, d.help) == (13, "write `3`: numbers take no `+`")
    d = syntax_error("study 42\n")
    assert (d.col, d.help) == (7, 'the study name is a string: `study "42"`')


def test_a_goal_without_its_metric_on_the_line_is_reported_there() -> None:
    # newlines are not significant: the next line's first word would become the metric
    assert error_at('study "x"\nobjective minimize\nsearch optuna { seed = 0 }\n') == (
        "HP101", 2, 19, "`minimize` needs its metric on the same line", "write `objective minimize val_loss`"
    )
    assert error_at('study "x"\nobjective maximize  # the accuracy\nsearch optuna\n') == (
        "HP101", 2, 19, "`maximize` needs its metric on the same line", "write `objective maximize val_accuracy`"
    )
    assert error_at('study "x"\nobjective {\n  minimize\n  val_loss\n}\n') == (
        "HP101", 3, 11, "`minimize` needs its metric on the same line", "write `minimize val_loss`"
    )


def test_a_study_without_its_name_does_not_take_the_next_section_as_it() -> None:
    # `study` then `pipeline { ... }` read as `study pipeline { ... }`: "takes only a name"
    assert error_at('study\npipeline { trainer = trainer:T }\n') == (
        "HP101", 1, 6, "`study` needs its name on the same line",
        'write `study "my-study"`; the `pipeline { ... }` below would be taken as the name',
    )


def test_the_parser_cache_is_private_and_not_taken_from_another_users_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from hpoc.dsl import parse as P

    text = Path(__file__).resolve().parents[1].joinpath("examples/digits/study.hpo").read_text()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        P._parser.cache_clear()
        first = parse(text)
        (kept,) = (tmp_path / "hpoc").iterdir()  # the built parser, named per Python
        assert kept.name.endswith(f"-py{sys.version_info[0]}{sys.version_info[1]}.lark-cache")
        assert (tmp_path / "hpoc").stat().st_mode & 0o077 == 0
        kept.unlink()
        monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path / "hpoc").st_uid + 1)  # someone else's
        P._parser.cache_clear()
        assert parse(text) == first
        assert list((tmp_path / "hpoc").iterdir()) == []
    finally:
        P._parser.cache_clear()


def test_a_directory_or_a_plan_given_for_a_spec_names_the_spec_to_pass(tmp_path: Path) -> None:
    """`hpoc check .`, `hpoc check build/s`, `hpoc check build/s/plan.json`: the path meant."""
    def help_for(path: Path) -> str:
        with pytest.raises(SpecSyntaxError) as info:
            read_spec(path)
        d = info.value.diagnostics[0]
        assert d.code == "HP001"
        return d.help or ""

    study = tmp_path / "study"
    study.mkdir()
    (study / "study.hpo").write_text('study "x"\n')
    assert f"`{study / 'study.hpo'}`" in help_for(study)
    build = tmp_path / "build"
    build.mkdir()
    plan = build / "plan.json"
    plan.write_text(json.dumps({"source": {"workdir": str(study), "file": "study.hpo"}}))
    assert help_for(build) == f"this is a build directory: pass the spec it was compiled from, `{study / 'study.hpo'}`"
    assert f"`{study / 'study.hpo'}`" in help_for(plan)
    plan.write_text("{")  # not a plan: no spec to name, no traceback either
    assert help_for(plan).startswith("pass the spec it was compiled from (")


def test_a_python_file_given_for_a_spec_is_named_as_such(tmp_path: Path) -> None:
    """`hpoc check trainer.py` showed six syntax errors in Python code."""
    trainer = tmp_path / "trainer.py"
    trainer.write_text("import hpoc\n\nclass T(hpoc.Trainer):\n    pass\n")
    with pytest.raises(SpecSyntaxError) as info:
        read_spec(trainer)
    (d,) = info.value.diagnostics
    assert (d.code, d.message) == ("HP001", "is a Python file, not a study") and "pipeline" in (d.help or "")


@pytest.mark.parametrize(("given", "meant"), [("study", "study.hpo"), ("stduy.hpo", "study.hpo"),
                                              ("config.yml", "config.yaml")])
def test_a_missing_spec_names_the_file_meant_beside_it(tmp_path: Path, given: str, meant: str) -> None:
    for name in ("study.hpo", "config.yaml", "notes.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(SpecSyntaxError) as info:
        read_spec(tmp_path / given)
    (d,) = info.value.diagnostics
    assert (d.code, d.message, d.help) == ("HP001", "no such file", f"did you mean `{tmp_path / meant}`?")


def test_a_dangling_link_is_named_with_its_missing_target(tmp_path: Path) -> None:
    """`study.hpo` a link to a moved file got "no such file", "did you mean `study.hpo`?":
    the very name given, which `ls` shows."""
    (tmp_path / "study.hpo").symlink_to(tmp_path / "moved" / "study.hpo")
    with pytest.raises(SpecSyntaxError) as info:
        read_spec(tmp_path / "study.hpo")
    (d,) = info.value.diagnostics
    assert (d.code, d.message) == ("HP001", "no such file")
    assert d.help == f"it is a symbolic link to `{tmp_path / 'moved' / 'study.hpo'}`, which does not exist"


def test_a_missing_spec_with_a_quoted_tilde_says_the_shell_left_it(tmp_path: Path) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        read_spec("~/no-such-study.hpo")
    assert "the shell did not expand `~`" in (info.value.diagnostics[0].help or "")
    with pytest.raises(SpecSyntaxError) as info:  # `hpoc check *.hpo` where none is
        read_spec(tmp_path / "*.hpo")
    assert info.value.diagnostics[0].help == "no file matches this pattern (the shell passed it on as typed)"
    with pytest.raises(SpecSyntaxError) as info:  # nothing near: no guess
        read_spec(tmp_path / "other.hpo")
    assert info.value.diagnostics[0].help is None
