"""fpcli.cli.chat_loop: questions from a pipe and from a terminal (a real pty), Ctrl-C cancelling one answer."""

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fpcli.cli.chat_loop import HELP, ChatSummary, run_chat

ROOT = Path(__file__).resolve().parents[1]
# A chat whose answers are stubs: "slow" takes a minute (long enough to be interrupted), the rest answer at once.
STUB = """
import sys, time
from pathlib import Path
from fpcli.cli.chat_loop import run_chat

def answer(question):
    print(f"answering {question}", flush=True)
    if question == "slow":
        time.sleep(60)
    print(f"answer: {question}", flush=True)

summary = run_chat(answer, history_file=Path(sys.argv[1]))
print(f"summary {summary.asked} {summary.cancelled}", flush=True)
"""


def test_a_pipe_gets_one_answer_per_line_until_exit():
    asked, said = [], []
    stream = io.StringIO("first question\n\n   \n  second one  \n/help\n/nope\n/exit\nnever asked\n")
    summary = run_chat(asked.append, stream=stream, say=said.append)
    assert asked == ["first question", "second one"]
    assert summary == ChatSummary(asked=2, cancelled=0) and summary.to_dict() == {"asked": 2, "cancelled": 0}
    assert said == [HELP, f"unknown command /nope; {HELP}"]


def test_a_pipe_runs_to_the_end_of_input_and_a_path_like_question_is_a_question():
    asked = []
    assert run_chat(asked.append, stream=io.StringIO("a\n/what is in /tmp?\nb"), say=print).asked == 3
    assert asked == ["a", "/what is in /tmp?", "b"]


def test_ctrl_c_in_a_pipe_stops_the_run():
    def answer(question):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_chat(answer, stream=io.StringIO("a\nb\n"), say=print)


def test_interactive_loop_commands_and_cancellation(monkeypatch, tmp_path):
    lines = iter(["one", KeyboardInterrupt, "", "slow", "/help", "two", EOFError])

    def scripted_input(prompt):
        assert prompt == "? "
        line = next(lines)
        if isinstance(line, type):
            raise line
        return line

    def answer(question):
        if question == "slow":
            raise KeyboardInterrupt  # what SIGINT raises in the middle of an answer
        asked.append(question)

    asked, said = [], []
    monkeypatch.setattr("builtins.input", scripted_input)
    summary = run_chat(answer, interactive=True, prompt="? ", history_file=tmp_path / "h", say=said.append)
    assert asked == ["one", "two"]
    assert summary == ChatSummary(asked=3, cancelled=1)
    assert said == ["", "\nanswer cancelled", HELP, ""]


def _read_until(fd: int, marker: bytes, seen: bytearray, after: int = 0, timeout: float = 30.0) -> int:
    """Read the terminal into `seen` until `marker` appears at or after `after`; returns where the marker ends."""
    deadline = time.monotonic() + timeout
    while seen.find(marker, after) < 0:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        try:
            chunk = os.read(fd, 4096) if ready else b""
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"{marker!r} never came; the terminal shows {bytes(seen)!r}")
        seen += chunk
    return seen.find(marker, after) + len(marker)


def _drain(fd: int, seen: bytearray) -> None:
    """Everything the exited child left in the terminal."""
    while select.select([fd], [], [], 1)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: nothing more, the child's side is closed
            return
        if not chunk:
            return
        seen += chunk


def test_ctrl_c_in_a_terminal_cancels_the_answer_and_the_session_goes_on(tmp_path):
    script = tmp_path / "chat.py"
    script.write_text(STUB)
    history = tmp_path / "history"
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(history)], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    seen = bytearray()
    try:
        at = _read_until(master, b"> ", seen)
        os.write(master, b"slow\r")
        at = _read_until(master, b"answering slow", seen, at)
        child.send_signal(signal.SIGINT)
        at = _read_until(master, b"answer cancelled", seen, at)
        at = _read_until(master, b"> ", seen, at)  # typed before the prompt, input would meet a cooked terminal
        os.write(master, b"fast\r")
        at = _read_until(master, b"answer: fast", seen, at)
        at = _read_until(master, b"> ", seen, at)
        os.write(master, b"/help\r")
        at = _read_until(master, HELP.encode(), seen, at)
        _read_until(master, b"> ", seen, at)
        os.write(master, b"/exit\r")
        assert child.wait(timeout=30) == 0
        _drain(master, seen)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "answer: slow" not in text
    assert "summary 2 1" in text
    assert history.read_text().splitlines() == ["slow", "fast"]  # questions only: not /help, not /exit


def test_a_real_pipe_through_stdin(tmp_path):
    script = tmp_path / "chat.py"
    script.write_text(STUB)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "history")],
        input="a\nb\n", capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "answering a\nanswer: a\nanswering b\nanswer: b\nsummary 2 0\n"
    assert not (tmp_path / "history").exists()  # no history for piped input
