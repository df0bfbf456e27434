"""The input loop of `forestprune chat`: questions from a terminal or a pipe, each handed to an answer callback.

    summary = run_chat(lambda question: render(session.ask(question, generation)))

From a terminal: line editing and a persistent history (readline), Ctrl-D or /exit ends, Ctrl-C while an answer is
being generated cancels that answer only and the next prompt follows (the session, its prefilled prefix and the
clip's features stay); Ctrl-C at the prompt clears the line, as in a shell. From a pipe or file: one answer per
non-empty line, in order, until the end of input or a line `/exit`; Ctrl-C there stops the whole run, as a script
expects (KeyboardInterrupt propagates to the caller, which exits 130).

The loop knows nothing of models: it owns reading questions and the commands, the callback owns answering and
printing. Messages for the user (help, cancellation) go to `say`, stderr by default, so stdout keeps only answers.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, TextIO

EXIT_COMMANDS = ("/exit", "/quit")
HELP_COMMAND = "/help"
HELP = "Ask a question about the video. /exit or Ctrl-D ends; Ctrl-C cancels the answer being written."
HISTORY_LENGTH = 1000  # lines kept in the history file


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class ChatSummary:
    """What a chat did: questions handed to the callback and answers cancelled with Ctrl-C."""

    asked: int = 0
    cancelled: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _History:
    """readline's line editing, with its history loaded from and saved to `path` (when given and readable)."""

    def __init__(self, path: Path | None):
        # Imported only for a terminal: on some platforms importing readline writes escape codes to stdout.
        try:
            import readline
        except ImportError:  # Python built without it (Windows): plain input() still works
            readline = None
        self.readline, self.path = readline, path
        if readline is not None and path is not None:
            readline.set_history_length(HISTORY_LENGTH)
            try:
                readline.read_history_file(path)
            except OSError:
                pass  # the first chat, or an unreadable file: start with an empty history

    def forget(self, line: str) -> None:
        """Drop `line` from the history when it is the last entry: input() adds every line read, and the history
        keeps questions, not /help or /exit."""
        if self.readline is None:
            return
        last = self.readline.get_current_history_length()
        if last and self.readline.get_history_item(last) == line:  # 1-based here, 0-based in remove_history_item
            self.readline.remove_history_item(last - 1)

    def save(self) -> None:
        if self.readline is None or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError:
            pass  # history is a convenience: a read-only home must not turn a finished chat into a failure


def _command(line: str, say: Callable[[str], None]) -> bool | None:
    """True for an exit command, False for another command (handled here), None for a question."""
    if line in EXIT_COMMANDS:
        return True
    if line == HELP_COMMAND:
        say(HELP)
        return False
    if line.startswith("/") and " " not in line:
        say(f"unknown command {line}; {HELP}")
        return False
    return None


def run_chat(
    answer: Callable[[str], object],
    *,
    stream: TextIO | None = None,
    interactive: bool | None = None,
    prompt: str = "> ",
    history_file: Path | None = None,
    say: Callable[[str], None] = _stderr,
) -> ChatSummary:
    """Read questions from `stream` (default stdin) and hand each to `answer` until the input or the user ends.

    `interactive` defaults to whether the stream is a terminal; interactive input is read with input() (and so
    from stdin), with readline line editing and `history_file` as its history.
    """
    stream = sys.stdin if stream is None else stream
    if interactive is None:
        interactive = stream.isatty()
    summary = ChatSummary()
    if interactive:
        _interactive(answer, prompt, _History(history_file), say, summary)
    else:
        for raw in stream:
            line = raw.strip()
            if not line:
                continue
            command = _command(line, say)
            if command:
                break
            if command is None:
                summary.asked += 1
                answer(line)
    return summary


def _interactive(
    answer: Callable[[str], object], prompt: str, history: _History, say: Callable[[str], None], summary: ChatSummary
) -> None:
    try:
        while True:
            try:
                line = input(prompt).strip()
            except EOFError:  # Ctrl-D: end, with the shell's prompt on a line of its own
                say("")
                return
            except KeyboardInterrupt:  # Ctrl-C at the prompt: drop the line, prompt again
                say("")
                continue
            command = _command(line, say) if line else False
            if line and command is not None:
                history.forget(line)
            if command:
                return
            if command is None:
                summary.asked += 1
                try:
                    answer(line)
                except KeyboardInterrupt:
                    summary.cancelled += 1
                    say("\nanswer cancelled")
    finally:
        history.save()
