"""`vqa stack ...` subcommands (added to vqa.cli's parser)."""
from __future__ import annotations

import sys


def _stack(args):
    from vqa.stack.native import Stack

    return Stack(args.state, log=lambda m: print(m, file=sys.stderr, flush=True))


def cmd_up(args) -> int:
    stack = _stack(args)
    seconds = stack.up(workers=not args.no_workers, only=args.only or None, timeout=args.timeout)
    print(f"stack: up in {seconds:.1f} s; state in {stack.root}", file=sys.stderr)
    print("\n".join(stack.env_lines()))  # stdout: eval "$(vqa stack up)" works too
    return 0


def cmd_down(args) -> int:
    _stack(args).down(purge=args.purge)
    return 0


def cmd_status(args) -> int:
    rows = _stack(args).status()
    for r in rows:
        print(f"{r['service']:<20} {r['state']:<9} {r['address']:<22} pid {r['pid'] or '-'}")
    return 0 if all(r["state"] == "healthy" for r in rows) else 1


def cmd_env(args) -> int:
    stack = _stack(args)
    if not stack.state.get("ports"):
        raise LookupError(f"no stack in {stack.root}: run `vqa stack up` first")
    print("\n".join(stack.env_lines()))
    return 0


def cmd_init(args) -> int:
    from vqa.stack.native import init

    init(args.postgres, args.s3, args.secrets)
    return 0


def cmd_secrets(args) -> int:
    from vqa.stack.native import write_secrets

    made = write_secrets(args.folder)
    print(f"stack: {len(made)} credential files created in {args.folder} (existing ones kept)", file=sys.stderr)
    return 0


def cmd_dvc_remote(args) -> int:
    from vqa.stack.team import TEAM_REMOTE, apply_dvc_remote

    url = apply_dvc_remote(args.project)
    if url is None:
        raise ValueError("W2S_DVC_REMOTE is not set: export the stack's environment first (vqa stack env)")
    print(f"stack: DVC remote {TEAM_REMOTE!r} -> {url} is the default in {args.project}/.dvc/config.local",
          file=sys.stderr)
    return 0


def cmd_compose(args) -> int:
    from vqa.stack.compose import COMPOSE_FILE, check, write

    if args.check:
        problems = check(args.file or COMPOSE_FILE)
        for p in problems:
            print(f"vqa stack compose: {p}", file=sys.stderr)
        return 1 if problems else 0
    print(f"stack: wrote {write(args.file or COMPOSE_FILE)}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("stack", help="the team stack (PostgreSQL, SeaweedFS S3, MLflow, Prefect, Dask) on this machine")
    s.add_argument("--state", default=None, help="state folder (default: $W2S_STACK_DIR or .stack)")
    s = s.add_subparsers(dest="stack_cmd", required=True)
    up = s.add_parser("up", help="start what is not running; print the environment to export")
    up.add_argument("--no-workers", action="store_true", help="without the cpu and gpu Prefect workers")
    up.add_argument("--only", nargs="+", default=None, help="only these services")
    up.add_argument("--timeout", type=float, default=600,
                    help="seconds each tier of services may take to become healthy (default 600: a busy machine)")
    up.set_defaults(func=cmd_up)
    down = s.add_parser("down", help="stop every service; the data stays")
    down.add_argument("--purge", action="store_true", help="also delete the state folder and its data")
    down.set_defaults(func=cmd_down)
    s.add_parser("status", help="each service's state (exit 1 unless all are healthy)").set_defaults(func=cmd_status)
    s.add_parser("env", help="the environment that points the pipeline at the stack").set_defaults(func=cmd_env)
    from vqa.stack.native import add_init_args

    init = s.add_parser("init", help="create the databases and buckets (what `up` and compose run)")
    add_init_args(init)
    init.set_defaults(func=cmd_init)
    sec = s.add_parser("secrets", help="create the credential files in a folder (e.g. docker/secrets for compose)")
    sec.add_argument("folder")
    sec.set_defaults(func=cmd_secrets)
    rem = s.add_parser("dvc-remote", help="make W2S_DVC_REMOTE this project's default DVC remote (.dvc/config.local)")
    rem.add_argument("project", nargs="?", default=".")
    rem.set_defaults(func=cmd_dvc_remote)
    comp = s.add_parser("compose", help="write docker/compose.yaml from the service definitions")
    comp.add_argument("--check", action="store_true", help="exit 1 if the file differs or docker-compose rejects it")
    comp.add_argument("--file", default=None)
    comp.set_defaults(func=cmd_compose)
