# -*- test-case-name: tests.test_consolelog -*-
"""
VerneMQ's console log file: C{log.console = file | both}.

twistd already logs to stdout (C{-n}) or to C{twistd.log}; that is what
VerneMQ calls the console.  When C{log.console} is C{file} or C{both}, the
node also writes every event at or above C{log.console.level} to
C{log.console.file} (relative paths are taken from the directory the node
starts in), as text or as one JSON object per line
(C{log.console.file.format}), rotated at C{log.console.rotation.size}
bytes with C{log.console.rotation.keep} old files kept.

Erlang's log levels map onto Twisted's: C{notice} logs as C{info};
C{critical}, C{alert} and C{emergency} as C{critical}; C{none} writes
nothing.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

from vernemq.config import Config

#: Erlang (lager) level -> the lowest Twisted level written; None = nothing.
ERLANG_LEVELS: dict[str, LogLevel | None] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "notice": LogLevel.info,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
    "alert": LogLevel.critical,
    "emergency": LogLevel.critical,
    "none": None,
}


class ConsoleLogFileService(Service):
    """
    Write the node's log events to the console log file while running.

    @ivar path: the absolute path of the log file.
    @ivar level: the lowest level written.
    """

    name = "console log"

    def __init__(
        self,
        path: str,
        level: LogLevel,
        json: bool = False,
        rotate_bytes: int | None = None,
        keep: int = 5,
        publisher: LogPublisher = globalLogPublisher,
    ) -> None:
        self.path = os.path.abspath(path)
        self.level = level
        self.json = json
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.publisher = publisher
        self._file: LogFile | None = None
        self._observer: ILogObserver | None = None

    def startService(self) -> None:
        """Open (creating its directory) the file and start observing."""
        super().startService()
        directory, name = os.path.split(self.path)
        os.makedirs(directory, exist_ok=True)
        logfile = LogFile(
            name,
            directory,
            rotateLength=self.rotate_bytes or 0,
            maxRotatedFiles=self.keep if self.rotate_bytes else None,
        )
        self._file = logfile
        stream: Any = logfile
        inner = jsonFileLogObserver(stream) if self.json else textFileLogObserver(stream)
        predicate = LogLevelFilterPredicate(defaultLogLevel=self.level)
        self._observer = FilteringLogObserver(inner, [predicate])
        self.publisher.addObserver(self._observer)

    def stopService(self) -> None:
        """Stop observing and close the file."""
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None
        super().stopService()


def consoleLogService(config: Config) -> ConsoleLogFileService | None:
    """
    The console log file service C{config} asks for, or L{None} when
    C{log.console} is C{off} or C{console}, or the level is C{none}.
    """
    if config["log.console"] not in ("file", "both"):
        return None
    level = ERLANG_LEVELS[config["log.console.level"]]
    if level is None:
        return None
    return ConsoleLogFileService(
        config["log.console.file"],
        level,
        json=config["log.console.file.format"] == "json",
        rotate_bytes=config["log.console.rotation.size"],
        keep=config["log.console.rotation.keep"],
    )
