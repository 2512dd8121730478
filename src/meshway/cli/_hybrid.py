"""meshway hybrid gen-cert|issue-cert: certificates for control plane <-> data plane mTLS."""
from __future__ import annotations

from meshway.cli._common import fail


def register(sub) -> None:
    p = sub.add_parser("hybrid", help="hybrid mode (control plane / data plane) helpers")
    hsub = p.add_subparsers(dest="action", metavar="ACTION")
    hsub.required = True
    for name in ("gen-cert", "gen_cert"):
        text = "generate a shared cluster certificate and key" if name == "gen-cert" else "same as gen-cert (Kong's spelling)"
        q = hsub.add_parser(name, help=text)
        q.add_argument("cert", nargs="?", default="cluster.crt")
        q.add_argument("key", nargs="?", default="cluster.key")
        q.add_argument("-d", "--days", type=int, default=1095, help="validity in days (default 1095)")
        q.add_argument("-f", "--force", action="store_true", help="overwrite existing files")
        q.set_defaults(handler=_gen_cert)


def _gen_cert(args) -> int:
    from meshway.pki import gen_cluster_cert

    try:
        gen_cluster_cert(args.cert, args.key, days=args.days, force=args.force)
    except FileExistsError as e:
        return fail(f"{e.filename or e} already exists; use --force to overwrite")
    except OSError as e:
        return fail(f"cannot write {e.filename}: {e.strerror}")
    print(f"Successfully generated certificate/key pairs, they have been written to: '{args.cert}' and '{args.key}'.")
    return 0
