"""``python -m worker.app.flower``: an empty auth variable is dropped, no open UI on 0.0.0.0."""

from __future__ import annotations

from worker.app.flower import flower_command


def test_an_empty_basic_auth_is_dropped_and_flower_stays_on_loopback() -> None:
    argv, env, notice = flower_command(["--port=5555"], {"FLOWER_BASIC_AUTH": "", "FLOWER_UNAUTHENTICATED_API": "false", "PATH": "/bin"})
    assert "FLOWER_BASIC_AUTH" not in env
    assert env["FLOWER_UNAUTHENTICATED_API"] == "false" and env["PATH"] == "/bin"
    assert argv == ["-m", "celery", "-A", "tasks.app", "flower", "--address=127.0.0.1", "--port=5555"]
    assert notice is not None and "127.0.0.1" in notice


def test_with_authentication_it_listens_on_every_interface_of_the_platforms_port() -> None:
    argv, env, notice = flower_command([], {"FLOWER_BASIC_AUTH": "ops:s3cret", "PORT": "8080"})
    assert env["FLOWER_BASIC_AUTH"] == "ops:s3cret"
    assert "--address=0.0.0.0" in argv and "--port=8080" in argv
    assert notice is None
    assert all("s3cret" not in part for part in argv)  # credentials stay out of the process list


def test_an_explicit_address_and_other_options_pass_through() -> None:
    argv, _, notice = flower_command(["--address=0.0.0.0", "--port=5555", "--purge_offline_workers=60"], {})
    assert argv[-3:] == ["--address=0.0.0.0", "--port=5555", "--purge_offline_workers=60"]
    assert notice is None
