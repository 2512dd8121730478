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
    register_pki(hsub)


def _gen_cert(args) -> int:
    from meshway.pki import gen_cluster_cert

    try:
        gen_cluster_cert(args.cert, args.key, days=args.days, force=args.force)
    except FileExistsError as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"cannot write {e.filename}: {e.strerror}")
    print(f"Successfully generated certificate/key pairs, they have been written to: '{args.cert}' and '{args.key}'.")
    return 0


def register_pki(hsub) -> None:
    q = hsub.add_parser("gen-ca", help="create a cluster CA for cluster_mtls = pki")
    q.add_argument("cert", nargs="?", default="cluster_ca.crt")
    q.add_argument("key", nargs="?", default="cluster_ca.key")
    q.add_argument("-d", "--days", type=int, default=3650)
    q.add_argument("-f", "--force", action="store_true")
    q.set_defaults(handler=_gen_ca)
    q = hsub.add_parser("issue-cert", help="issue a node certificate signed by the cluster CA")
    q.add_argument("cert", nargs="?", default="cluster.crt")
    q.add_argument("key", nargs="?", default="cluster.key")
    q.add_argument("--ca-cert", default="cluster_ca.crt")
    q.add_argument("--ca-key", default="cluster_ca.key")
    q.add_argument("--common-name", "--cn", default="meshway_data_plane")
    q.add_argument("-d", "--days", type=int, default=365)
    q.add_argument("-f", "--force", action="store_true")
    q.set_defaults(handler=_issue_cert)


def _gen_ca(args) -> int:
    from meshway.pki import ClusterCA

    try:
        ClusterCA.create(args.cert, args.key, days=args.days, force=args.force)
    except FileExistsError as e:
        return fail(str(e))
    print(f"cluster CA written to '{args.cert}' and '{args.key}'")
    return 0


def _issue_cert(args) -> int:
    from meshway.pki import ClusterCertError, issue_cert

    try:
        issue_cert(args.ca_cert, args.ca_key, args.cert, args.key, args.common_name, days=args.days, force=args.force)
    except FileExistsError as e:
        return fail(str(e))
    except (ClusterCertError, OSError, ValueError) as e:
        return fail(str(e))
    print(f"certificate for '{args.common_name}' written to '{args.cert}' and '{args.key}'")
    return 0
