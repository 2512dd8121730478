"""Socket helpers shared by the HTTP and stream proxies.

Rules:
- A listener socket is made ready (options, bind, listen) here, once, by the process that owns
  listeners; workers receive it already listening.
- The *original destination* of an accepted connection is the address the client meant to
  reach. With iptables TPROXY the kernel hands us a socket whose local address already is that
  destination; with REDIRECT/DNAT the local address is our listener and conntrack keeps the
  original in `SO_ORIGINAL_DST`. `original_destination()` answers both ways: conntrack first,
  the local address when conntrack has no NAT entry (ENOENT) or is not loaded.
- `proxy_bind` sets the source address of every upstream connection, so the proxy's own
  traffic can be told apart by iptables rules (`! --source`) and is not intercepted again.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

# Linux constants the socket module does not export.
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = 75
SO_ORIGINAL_DST = 80  # SOL_IP; IP6T_SO_ORIGINAL_DST has the same value at SOL_IPV6
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_SOCKADDR_IN = struct.Struct("!2xH4s8x")
_SOCKADDR_IN6 = struct.Struct("!2xH4x16s4x")


def is_ipv6(host: str) -> bool:
    return ":" in host.strip("[]")


def prepare_listener_socket(spec: Any) -> socket.socket:
    """A non-blocking socket bound to `spec` and listening with its options and backlog."""
    host = spec.family_host
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    udp = getattr(spec, "udp", False)  # a datagram socket: bound, nothing to listen for
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        _set_listener_options(sock, spec, family)
        sock.bind(_bind_address(host, spec.port, family))
        if not udp:
            sock.listen(spec.backlog)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {spec}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def _set_listener_options(sock: socket.socket, spec: Any, family: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if spec.reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if spec.transparent:
        _set_transparent(sock, family)


def _set_transparent(sock: socket.socket, family: int) -> None:
    # Needs CAP_NET_ADMIN; without it the error names the listener (see prepare_listener_socket).
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    else:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)


def _bind_address(host: str, port: int, family: int) -> tuple:
    try:
        ipaddress.ip_address(host)
        return (host, port)
    except ValueError:
        info = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        return info[0][4]


def normalize_ip(ip: str) -> str:
    """`::ffff:10.0.0.1` (a v4 client on a dual-stack socket) becomes `10.0.0.1`."""
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip


def original_destination(sock: Any) -> tuple[str, int]:
    """The (ip, port) the client connected to before TPROXY, REDIRECT or DNAT."""
    local = sock.getsockname()
    nat = _conntrack_destination(sock, local)
    return nat if nat else (normalize_ip(local[0]), local[1])


def _conntrack_destination(sock: Any, local: tuple) -> tuple[str, int] | None:
    v6 = len(local) == 4 and not local[0].startswith("::ffff:")
    try:
        if v6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, _SOCKADDR_IN6.size)
            port, addr = _SOCKADDR_IN6.unpack(raw)
            return socket.inet_ntop(socket.AF_INET6, addr), port
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN.size)
    except OSError:  # ENOENT: no NAT entry (TPROXY or direct); ENOPROTOOPT: no conntrack
        return None
    port, addr = _SOCKADDR_IN.unpack(raw)
    return socket.inet_ntoa(addr), port


def local_address(transport: Any) -> tuple[str, int] | None:
    """The local (ip, port) a client reached, normalized; None when unknown."""
    local = transport.get_extra_info("sockname") if transport is not None else None
    return (normalize_ip(local[0]), local[1]) if local else None


def peer_address(sock: Any) -> tuple[str, int]:
    peer = sock.getpeername()
    return normalize_ip(peer[0]), peer[1]


def upstream_source(settings: Any) -> tuple[str, int] | None:
    """`local_addr` for upstream connections from `proxy_bind`, or None when unset."""
    value = (getattr(settings, "proxy_bind", "") or "").strip()
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise ValueError(f"proxy_bind: invalid IP address {value!r}") from None
    return (str(ip), 0)


def bind_source_socket(source: tuple[str, int] | None, family: int) -> socket.socket:
    """A non-blocking TCP socket bound to `source` without reserving a port until connect()."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source:
            # Without this every bind() holds an ephemeral port for all destinations at once.
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind(source)
    except OSError:
        sock.close()
        raise
    return sock


async def connect_upstream(loop: Any, factory: Any, host: str, port: int,
                           source: tuple[str, int] | None = None) -> tuple[Any, Any]:
    """`loop.create_connection` from `source` (proxy_bind); resolves names off the loop."""
    family, address = await _resolve(loop, host, port, source)
    sock = bind_source_socket(source, family)
    try:
        await loop.sock_connect(sock, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


async def _resolve(loop: Any, host: str, port: int, source: tuple[str, int] | None) -> tuple[int, tuple]:
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)
    except ValueError:
        pass
    family = 0
    if source:
        family = socket.AF_INET6 if is_ipv6(source[0]) else socket.AF_INET
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return infos[0][0], infos[0][4]
