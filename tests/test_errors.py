import pytest

from motion_loop.errors import UserError, run_cli


def test_run_cli_turns_user_errors_and_interrupts_into_exit_codes(capsys):
    assert run_cli(lambda: None, interrupted="x") == 0

    def bad():
        raise UserError("the flag is wrong: use another")

    assert run_cli(bad, interrupted="x") == 2
    assert capsys.readouterr().err == "error: the flag is wrong: use another\n"

    def stop():
        raise KeyboardInterrupt

    assert run_cli(stop, interrupted="resume later") == 130
    assert capsys.readouterr().err == "interrupted: resume later\n"

    def crash():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # bugs keep their traceback
        run_cli(crash, interrupted="x")
