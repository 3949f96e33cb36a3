"""What a newcomer types wrong on the command line gets the command meant, not argparse's list."""

from __future__ import annotations

import pytest

from hpoc.cli import main


@pytest.mark.parametrize(("argv", "meant"), [
    (["chek", "study.hpo"], "did you mean `check`?"),
    (["Compile", "study.hpo"], "did you mean `compile`?"),
    (["stauts"], "did you mean `status`?"),
    (["study.hpo", "check"], "the command comes first: `hpoc check study.hpo`"),
    (["study.hpo", "compile", "-o", "build/s"], "the command comes first: `hpoc compile study.hpo -o build/s`"),
])
def test_an_unknown_command_names_the_one_meant(argv: list[str], meant: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unknown command `{argv[0]}`" in err and meant in err
    assert "Traceback" not in err


def test_a_word_like_no_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "commands are check, compile" in err and "did you mean" not in err


@pytest.mark.parametrize("argv", [["run", "--local=true", "s.hpo"], ["submit", "s.hpo", "--dry-run=false"]])
def test_a_value_given_to_a_switch_says_the_switch_takes_none(argv: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """argparse said only "ignored explicit argument 'true'"."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    switch = argv[1].split("=")[0] if argv[1].startswith("--") else argv[2].split("=")[0]
    assert f"`{switch}` is a switch: give it alone" in capsys.readouterr().err


def test_ctrl_c_while_the_command_loads_is_no_traceback(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Loading a command's modules takes seconds on a login node's file system: a Ctrl-C then
    printed a KeyboardInterrupt traceback."""
    import hpoc.cli

    def interrupted(only: str | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hpoc.cli, "build_parser", interrupted)
    assert main(["check", "study.hpo"]) == 130
    assert capsys.readouterr().err == "hpoc: interrupted\n"


@pytest.mark.parametrize(("argv", "meant"), [
    (["compile", "study.hpo", "build/s"], "an output path goes after `-o`: `-o build/s`"),
    (["run", "study.hpo", "local"], "did you mean `--local`?"),
    (["check", "study.hpo", "-preflight"], "did you mean `--preflight`?"),
    (["check", "study.hpo", "--prefligth"], "did you mean `--preflight`?"),
])
def test_a_word_the_command_does_not_take_is_named_under_its_usage(argv: list[str], meant: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """argparse said "unrecognized arguments" under `hpoc`'s usage, with no command's options."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: hpoc {argv[0]} ") and f"hpoc {argv[0]}: error: unrecognized arguments" in err
    assert meant in err


@pytest.mark.parametrize(("argv", "meant"), [
    (["--verison"], "did you mean `--version`?"),
    (["--local", "run", "s.hpo"], "a command's options go after it: `hpoc run --local s.hpo`"),
])
def test_an_option_before_any_command_names_what_was_meant(argv: list[str], meant: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """argparse said only "the following arguments are required: COMMAND"."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unknown option `{argv[0]}`" in err and meant in err


def test_help_as_a_command_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, usage in ((["help"], "usage: hpoc [-h]"), (["help", "check"], "usage: hpoc check ")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0 and capsys.readouterr().out.startswith(usage)


def test_a_word_that_is_no_path_before_a_command_is_not_taken_for_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chek", "check"]) == 2
    assert "did you mean `check`?" in capsys.readouterr().err


def test_a_current_directory_removed_under_the_shell_is_said(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Relative paths need the current directory: its removal showed "hpoc: error:: No such file
    or directory"."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["check", "study.hpo"]) == 2
    assert capsys.readouterr().err.startswith("hpoc: error: the current directory no longer exists")


def test_the_closing_line_of_a_failed_command_says_what_failed(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every spec error ended "could not compile the study": under `hpoc fmt`, which compiles
    nothing, and after a file that could not even be read."""
    bad = tmp_path / "bad.hpo"
    bad.write_text('study "x"\npipeline { trainer = a:B\n')
    for argv, closing in ((["fmt", str(bad)], "error: could not format the study (1 error)"),
                          (["check", str(bad)], "error: the study is not valid (1 error)"),
                          (["compile", str(bad), "-o", str(tmp_path / "b")],
                           "error: could not compile the study (1 error)"),
                          (["check", str(tmp_path / "none.hpo")], "error: could not read the study (1 error)"),
                          (["fmt", str(tmp_path)], "error: could not read the study (1 error)")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.rstrip().endswith(closing), (argv, err)


def test_version_names_the_commit_of_a_checkout(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hpoc --version` said "hpoc 0.1.0" for every commit: a bug report could not say which
    code ran. In a git checkout of hpoc it names the commit, and whether the tree has changes."""
    import shutil
    import subprocess

    from hpoc import __version__
    from hpoc.version import describe

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == describe() + "\n"
    for other in ("version", "-V"):  # as other tools spell it
        with pytest.raises(SystemExit):
            main([other])
        assert capsys.readouterr().out == describe() + "\n", other
    (tmp_path / "hpoc").mkdir()
    assert describe(tmp_path).startswith(f"hpoc {__version__} (Python ")  # not a checkout: no commit
    if shutil.which("git") is None:
        pytest.skip("no git here")
    (tmp_path / "hpoc" / "x.py").write_text("x = 1\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert describe(tmp_path).startswith(f"hpoc {__version__} (git {head}; Python "), describe(tmp_path)
    (tmp_path / "hpoc" / "x.py").write_text("x = 2\n")
    assert f"(git {head}, with changes; Python " in describe(tmp_path)
