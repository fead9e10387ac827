"""Decides which addresses the load generator may drive: loopback only, checked before any
connection is made, so a mistyped target can never load someone else's server."""
import ipaddress


class NotLoopbackError(ValueError):
    """The target address is not on this machine's loopback interface."""


def split_host_port(target: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); raises ValueError when malformed
    (an IPv6 address needs its brackets: '::1:5' could be an address or an address and port)."""
    if target.startswith("["):
        host, sep, port = target[1:].partition("]:")
    else:
        host, sep, port = target.rpartition(":")
    if (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536
            or (":" in host and not target.startswith("["))):
        raise ValueError(f"target must be HOST:PORT with a port 1..65535, got {target!r}")
    return host, int(port)


def loopback_target(target: str) -> str:
    """Returns the gRPC address to dial for `target`, or raises NotLoopbackError.

    Accepted: 127.0.0.0/8, ::1 (also IPv4-mapped loopback) and the name `localhost`, which is
    dialled as 127.0.0.1 so no resolver is asked. Every other name is refused unresolved.
    """
    host, port = split_host_port(target)
    if host.lower() == "localhost":
        return f"127.0.0.1:{port}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise NotLoopbackError(
            f"refusing target {target!r}: only loopback addresses (127.0.0.0/8, ::1, localhost) "
            "may be load-tested, and host names other than localhost are not resolved") from None
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if not ip.is_loopback:
        raise NotLoopbackError(
            f"refusing target {target!r}: {ip} is not a loopback address "
            "(only 127.0.0.0/8 and ::1 may be load-tested)")
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
