"""Live response: the verbs an analyst may type, their arguments and the permission each needs."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum

from vigil.core.rbac import Permission


class Level(StrEnum):
    BASIC = "Basic"
    ADVANCED = "Advanced"


PERMISSION = {Level.BASIC: Permission.LIVE_RESPONSE_BASIC, Level.ADVANCED: Permission.LIVE_RESPONSE_ADVANCED}


@dataclass(frozen=True)
class Verb:
    name: str
    level: Level
    min_args: int
    max_args: int
    usage: str
    server_only: bool = False  # answered by the server, never sent to the device


VERBS: dict[str, Verb] = {v.name: v for v in (
    Verb("help", Level.BASIC, 0, 0, "help", server_only=True),
    Verb("processes", Level.BASIC, 0, 0, "processes"),
    Verb("connections", Level.BASIC, 0, 0, "connections"),
    Verb("persistence", Level.BASIC, 0, 0, "persistence"),
    Verb("fileinfo", Level.BASIC, 1, 1, "fileinfo <path>"),
    Verb("findfile", Level.BASIC, 1, 1, "findfile <file name>"),
    Verb("getfile", Level.BASIC, 1, 1, "getfile <path>"),
    Verb("library", Level.ADVANCED, 0, 0, "library", server_only=True),
    Verb("putfile", Level.ADVANCED, 1, 1, "putfile <library file>"),
    Verb("run", Level.ADVANCED, 1, 16, "run <library script> [arguments...]"),
    Verb("remediate", Level.ADVANCED, 2, 3, "remediate file <path> | remediate process <pid> <creation time>"),
    Verb("undo", Level.ADVANCED, 1, 1, "undo <remediation command id>"),
)}

# The largest file getfile returns, and the largest library file or script sent inside a command.
GETFILE_MAX_BYTES = 64 * 1024 * 1024
LIBRARY_MAX_BYTES = 1024 * 1024


class CommandLineError(ValueError):
    def __init__(self, message: str, field: str = "command") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LiveCommand:
    verb: Verb
    args: tuple[str, ...]

    @property
    def line(self) -> str:
        return shlex.join([self.verb.name, *self.args])


def parse_command(line: str) -> LiveCommand:
    """Split a command line the way a shell would and check it against its verb."""
    try:
        words = shlex.split(line.strip())
    except ValueError as e:
        raise CommandLineError(f"cannot parse the command line: {e}") from None
    if not words:
        raise CommandLineError("empty command")
    verb = VERBS.get(words[0].lower())
    if verb is None:
        raise CommandLineError(f"unknown command {words[0]!r}; try: {', '.join(VERBS)}")
    args = tuple(words[1:])
    if not verb.min_args <= len(args) <= verb.max_args:
        raise CommandLineError(f"usage: {verb.usage}")
    if verb.name == "remediate" and (args[0] not in ("file", "process") or
                                     (args[0] == "file") != (len(args) == 2)):
        raise CommandLineError(f"usage: {verb.usage}")
    if verb.name in ("fileinfo", "getfile") or (verb.name == "remediate" and args[0] == "file"):
        path = args[-1]
        if not path.startswith("/") or "\x00" in path:
            raise CommandLineError(f"{verb.name}: give an absolute path, not {path!r}")
    return LiveCommand(verb, args)


def help_text() -> str:
    return "\n".join(f"{v.usage:<70} {v.level}" for v in VERBS.values())
