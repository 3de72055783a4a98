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


def test_sigterm_is_handled_like_ctrl_c(capsys):
    import os
    import signal

    cleaned, before = [], signal.getsignal(signal.SIGTERM)

    def job():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
        finally:
            cleaned.append(True)

    assert run_cli(job, interrupted="temporary files removed") == 143
    assert cleaned == [True]
    assert capsys.readouterr().err == "interrupted (terminated): temporary files removed\n"
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_sighup_is_handled_like_ctrl_c(capsys):
    import os
    import signal

    def job():
        os.kill(os.getpid(), signal.SIGHUP)
        signal.pause()

    assert run_cli(job, interrupted="x") == 129
    assert capsys.readouterr().err == "interrupted (hung up): x\n"


def test_a_signal_turned_into_another_error_by_c_code_still_exits_as_the_signal(capsys):
    import signal as sig

    from motion_loop import errors

    def job():
        try:
            errors._raise_terminated(sig.SIGTERM, None)
        except errors.Terminated:
            raise ValueError("Invalid bounding box")  # what matplotlib's Agg renderer made of it

    assert errors.run_cli(job, interrupted="nothing was written") == 143
    assert capsys.readouterr().err.splitlines()[-1] == "interrupted (terminated): nothing was written"

    def broken():
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):  # without a signal, an error stays an error
        errors.run_cli(broken, interrupted="x")
