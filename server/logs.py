"""Structured logs: one JSON object per line on stderr.

Callers pass fields with `extra={"fields": {...}}`. Nothing secret goes in: no PINs, no API keys
(tests grep the output for them).
"""
import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(time.time(), 3), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("hashmatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
