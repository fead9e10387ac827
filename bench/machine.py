"""What produced a benchmark number: the CPU, the cores this process may use, the load when it
started, and the library versions and kernel backend. Every benchmark prints and stores this
beside its numbers, since these machines are shared and differ."""
import os
import platform

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def cpuid() -> str:
    """'family F model M' from /proc/cpuinfo: virtual machines often hide the model name."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"


def l3_bytes() -> int | None:
    """The level-3 cache size Linux reports for CPU 0 (what the index's row-sort choice reads)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            with open(f"{base}/{entry}/level") as f:
                if f.read().strip() != "3":
                    continue
            with open(f"{base}/{entry}/size") as f:
                size = f.read().strip()
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe() -> dict:
    """cpu, cpuid, l3_bytes, cores, usable_cores, load_average (1/5/15 min), system, python,
    numpy, kernel_backend (imported lazily, so describing a machine loads no compiled code)."""
    from hashmatch.core import kernels

    return {"cpu": cpu_model(), "cpuid": cpuid(), "l3_bytes": l3_bytes(),
            "cores": os.cpu_count(), "usable_cores": usable_cores(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "system": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "kernel_backend": kernels.backend_name()}
