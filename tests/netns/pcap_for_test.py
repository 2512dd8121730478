"""A capture on one of the namespace's interfaces (`lo` by default) with tcpdump, read back as TCP
segments (IPv4 only)."""
from __future__ import annotations

import dataclasses
import signal
import struct
import time
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Segment:
    """One captured TCP segment with its payload."""

    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes

    def between(self, a: str, b: tuple[str, int]) -> bool:
        """Is this segment on the connection between host `a` and the (ip, port) `b`, either way?"""
        return (self.src[0] == a and self.dst == b) or (self.dst[0] == a and self.src == b)


class CaptureForTest:
    """`tcpdump -i IFACE -w FILE` inside the namespace; `segments()` once stopped."""

    def __init__(self, netns, path: Path, iface: str = "lo") -> None:
        self.path = path
        self.proc = netns.spawn("tcpdump", "-i", iface, "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(path), "tcp")
        line = self.proc.stderr.readline()  # bounded: "listening on lo ..." once attached, or EOF if it failed
        if b"listening" not in line:
            raise RuntimeError(f"tcpdump did not start: {line!r}")
        time.sleep(0.2)

    def stop(self) -> list[Segment]:
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=5)
        if err.startswith(b"0 packets captured") or b"\n0 packets captured" in err:
            raise RuntimeError(f"tcpdump captured nothing: {err!r}")
        return read_pcap_for_test(self.path.read_bytes())


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def read_pcap_for_test(data: bytes) -> list[Segment]:
    """TCP segments of a classic pcap file (Ethernet link type, as Linux `lo` and veths give)."""
    out, offset = [], 24
    linktype = struct.unpack("<I", data[20:24])[0]
    link = 14 if linktype == 1 else 16  # EN10MB, else Linux cooked capture
    while offset + 16 <= len(data):
        incl = struct.unpack("<I", data[offset + 8:offset + 12])[0]
        frame = data[offset + 16:offset + 16 + incl]
        offset += 16 + incl
        ip = frame[link:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        sport, dport = struct.unpack("!HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        out.append(Segment((_ip(ip[12:16]), sport), (_ip(ip[16:20]), dport), bytes(payload)))
    return out
