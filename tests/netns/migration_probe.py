"""Run inside a test's host namespace by test_migration: the agent's side of a live
migration without libvirt. `hook ARGS...`: a hook call served as the agent serves it
(it follows libvirt's events); `publish DRIVER`: the resumed event (live XML on stdin);
`withdraw KEY`: the suspended/stopped event. Exit 1 with the line on a refusal."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from vzlibvirt import engine, hook, migration  # noqa: E402
from vzlibvirt.config import load_config  # noqa: E402
from vzlibvirt.errors import VzError  # noqa: E402
from vzlibvirt.netlink import Netlink  # noqa: E402
from vzlibvirt.state import StateStore  # noqa: E402

op, args = sys.argv[1], sys.argv[2:]
if op == "hook":
    sys.exit(hook.main(args, resources=hook.Resources(follows_events=True)))
config = load_config()
store = StateStore(config.state.dir)
try:
    with Netlink() as nl:
        if op == "publish":
            outcome = migration.publish(sys.stdin.buffer.read(), args[0], config, store, nl)
        else:
            outcome = engine.withdraw(args[0], store, nl)
except VzError as exc:
    print(exc.line(), file=sys.stderr)
    sys.exit(1)
print(outcome)
