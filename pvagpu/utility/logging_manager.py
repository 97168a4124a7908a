"""pvapy's LoggingManager: loggers that share handlers and one level.

``LoggingManager.getLogger(name)`` gives a :class:`logging.Logger` with the
manager's handlers (standard output unless a log file is named) at the
manager's level (ERROR until :meth:`LoggingManager.setLogLevel`);
``setLogLevel`` changes the level of every logger and handler it made.
"""
from __future__ import annotations

import logging
import sys
from logging import handlers


class LoggingManager:
    """Class-level registry of handlers and loggers (pvapy's API)."""

    _formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    _logLevel = "ERROR"
    _handlerMap: dict = {}
    _loggerMap: dict = {}

    @classmethod
    def addStreamHandler(cls, stream=None):
        """Log to ``stream`` (standard output by default)."""
        stream = sys.stdout if stream is None else stream
        cls.addHandler(f"stream://{getattr(stream, 'name', id(stream))}",
                       logging.StreamHandler(stream))

    @classmethod
    def addFileHandler(cls, filename):
        """Log to ``filename``, a new file every day."""
        cls.addHandler(f"file://{filename}",
                       handlers.TimedRotatingFileHandler(filename, when="D", interval=1))

    @classmethod
    def addHandler(cls, name, handler):
        """Add ``handler`` (once per ``name``) to every logger, now and later."""
        if name in cls._handlerMap:
            return
        handler.setFormatter(cls._formatter)
        handler.setLevel(cls._logLevel)
        cls._handlerMap[name] = handler
        for logger in cls._loggerMap.values():
            logger.addHandler(handler)

    @classmethod
    def getLogger(cls, name, logLevel=None, logFile=None) -> logging.Logger:
        """The logger ``name``; ``logLevel`` sets the level of all loggers,
        ``logFile`` logs to that file instead of standard output."""
        if logLevel:
            cls.setLogLevel(logLevel)
        if logFile:
            cls.addFileHandler(logFile)
        else:
            cls.addStreamHandler(sys.stdout)
        logger = cls._loggerMap.get(name)
        if logger is None:
            logger = logging.getLogger(name)
            logger.setLevel(cls._logLevel)
            for handler in cls._handlerMap.values():
                logger.addHandler(handler)
            cls._loggerMap[name] = logger
        return logger

    @classmethod
    def setLogLevel(cls, logLevel):
        """Level (``'DEBUG'``, ``'INFO'``, ``'WARNING'``, ``'ERROR'``...) of
        every logger and handler of the manager."""
        cls._logLevel = str(logLevel).upper()
        for logger in cls._loggerMap.values():
            logger.setLevel(cls._logLevel)
        for handler in cls._handlerMap.values():
            handler.setLevel(cls._logLevel)
