"""Stand-ins for the data plane's listeners in the transparent proxy installer tests.

    python tproxy_servers_for_test.py tcp NAME PORT        # answers "NAME <original destination>\\n"
    python tproxy_servers_for_test.py dns ADDRESS PORT IP  # answers every A question with IP

The TCP one listens on every IPv4 and IPv6 address and reports the connection's destination before
any REDIRECT (SO_ORIGINAL_DST), which is what the real data plane reads to know where an app wanted
to go. Both print `ready` once listening.
"""
from __future__ import annotations

import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80


def original_destination(conn: socket.socket) -> str:
    if conn.family == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, address = struct.unpack("!2xH4s8x", raw)
        return f"{socket.inet_ntop(socket.AF_INET, address)}:{port}"
    raw = conn.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
    port, address = struct.unpack("!2xH4x16s4x", raw)
    return f"[{socket.inet_ntop(socket.AF_INET6, address)}]:{port}"


def serve_tcp(sock: socket.socket, name: str) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            try:
                where = original_destination(conn)
            except OSError:  # no conntrack on this host (no nat rules): the address reached is the one asked for
                host, port = conn.getsockname()[:2]
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            conn.sendall(f"{name} {where}\n".encode())


def tcp(name: str, port: int) -> None:
    socks = []
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(16)
        socks.append(sock)
    for sock in socks:
        threading.Thread(target=serve_tcp, args=(sock, name), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def dns(address: str, port: int, answer: str) -> None:
    from dnslib import QTYPE, RR, A, DNSRecord

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        request = DNSRecord.parse(data)
        reply = request.reply()
        if request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(answer), ttl=5))
        sock.sendto(reply.pack(), peer)


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "tcp":
        tcp(args[0], int(args[1]))
    else:
        dns(args[0], int(args[1]), args[2])
