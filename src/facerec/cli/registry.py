"""The table of sub-commands: each group module registers its commands here, handler included."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

Handler = Callable[[argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    name: str  # "train", or "eval lfw": the command 'lfw' of the group 'eval'
    help: str
    handler: Handler  # parsed arguments -> exit code
    add_arguments: AddArguments


COMMANDS: dict[str, Command] = {}


def command(name: str, help_text: str, handler: Handler) -> Callable[[AddArguments], AddArguments]:
    """Register the sub-command `name`, run by `handler`; the decorated function adds its arguments."""

    def register(add_arguments: AddArguments) -> AddArguments:
        if name in COMMANDS:
            raise ValueError(f"command '{name}' registered twice")
        COMMANDS[name] = Command(name, help_text, handler, add_arguments)
        return add_arguments

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec", description="Deep face recognition toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for entry in COMMANDS.values():
        group, _, leaf = entry.name.rpartition(" ")
        target = _group_subparsers(commands, groups, group) if group else commands
        p = target.add_parser(leaf, help=entry.help, description=entry.help)
        entry.add_arguments(p)
        p.set_defaults(handler=entry.handler)
    return parser


def _group_subparsers(
    commands: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction], group: str
) -> argparse._SubParsersAction:
    """The sub-commands of `group` (e.g. 'eval' of 'eval lfw'), made on first use."""
    if group not in groups:
        parser = commands.add_parser(group, help=f"{group} commands")
        groups[group] = parser.add_subparsers(dest=f"{group}_command", required=True)
    return groups[group]
