"""``harness list``: the registered plugins' names (and the image corruptions)."""
from __future__ import annotations

from harness.cli.common import plugin_host

LIST_KINDS = ("methods", "datasets", "teachers", "students", "metrics", "plugins", "corruptions")


def register(sub) -> None:
    ls = sub.add_parser("list", help="list registered methods, datasets, teachers, students, metrics or plugins "
                        "(or the 18 image corruptions)")
    ls.add_argument("kind", choices=LIST_KINDS)
    ls.set_defaults(handler=cmd_list)


def cmd_list(args) -> int:
    if args.kind == "corruptions":  # not a plugin registry
        from harness.data import corruptions

        for group, names in corruptions.GROUPS.items():
            for name in names:
                print(f"{name:<18} {group:<20} {corruptions.describe(name)}")
        return 0
    host = plugin_host()
    if args.kind == "plugins":
        for name, info in sorted(host.info.items()):
            print(f"{name}\t{info.source}\tversion {info.version}\thooks: {', '.join(host.hooks_of(name))}")
        return 0
    for entry in sorted(host.catalog.entries[args.kind].values(), key=lambda e: e.name):
        print(f"{entry.name:<16} {entry.description}")
    return 0
