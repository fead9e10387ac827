"""CPU accounting for a load run: the server's and the client's own, read with psutil, because on
a small machine the client competes with the server it measures and both must be shown."""
import contextlib

import psutil


def process_cpu(proc, children: bool = True) -> float | None:
    """user + system CPU seconds of a psutil.Process (and its children); None if unreadable."""
    if proc is None:
        return None
    try:
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True) if children else ():
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total
    except psutil.Error:
        return None


def listening_process(target: str):
    """The local process listening on the target's port, or None when it cannot be seen."""
    port = int(target.rsplit(":", 1)[1])
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    return None
