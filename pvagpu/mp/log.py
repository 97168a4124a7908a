"""Loggers configured the way pvapy's worker classes take them.

``logLevel`` is a level name (debug, info, warning, error, critical) or
None for no output (as in pvapy); ``logFile`` a path, else standard error. A worker
process calls :func:`get_logger` again in the child, where a spawned
interpreter starts without the parent's logging configuration.
"""
from __future__ import annotations

import logging
from typing import Optional

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def get_logger(name: str, logLevel: Optional[str] = None,
               logFile: Optional[str] = None) -> logging.Logger:
    """The logger ``pvagpu.<name>``, with a handler when ``logLevel`` is given."""
    logger = logging.getLogger(f"pvagpu.{name}")
    if not logLevel:
        # no output of its own (not even Python's last-resort stderr); records
        # still reach handlers the application configured
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        return logger
    level = logging.getLevelName(str(logLevel).upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {logLevel!r}; use debug, info, warning, error "
                         f"or critical")
    logger.setLevel(level)
    if not any(getattr(h, "_pvagpu_target", None) == logFile for h in logger.handlers):
        handler = logging.FileHandler(logFile) if logFile else logging.StreamHandler()
        handler._pvagpu_target = logFile
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return logger
