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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe() -> dict:
    """cpu, cores, usable_cores, load_average (1/5/15 min), system, python, numpy,
    kernel_backend (imported lazily, so describing a machine loads no compiled code)."""
    from hashmatch.core import kernels

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable_cores(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "system": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "kernel_backend": kernels.backend_name()}
