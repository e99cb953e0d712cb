"""L{vernemq.consolelog}: the console log file VerneMQ users configure."""

from __future__ import annotations

import json
import os

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from vernemq.config import config_from_text
from vernemq.consolelog import ConsoleLogFileService, consoleLogService


class ConsoleLogFileServiceTests(SynchronousTestCase):
    """Events reach the file at or above the configured level."""

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.log = Logger(namespace="test", observer=self.publisher)
        self.path = os.path.join(self.mktemp(), "log", "console.log")

    def start(self, **kw: object) -> ConsoleLogFileService:
        service = ConsoleLogFileService(self.path, publisher=self.publisher, **kw)  # type: ignore[arg-type]
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def test_levelFilters(self) -> None:
        """Below the level nothing is written; at and above it, the message is."""
        service = self.start(level=LogLevel.warn)
        self.log.info("quiet {n}", n=1)
        self.log.warn("loud {n}", n=2)
        service.stopService()
        text = self.read()
        self.assertNotIn("quiet 1", text)
        self.assertIn("loud 2", text)

    def test_json(self) -> None:
        """C{format = json} writes one JSON event per record with its fields."""
        service = self.start(level=LogLevel.info, json=True)
        self.log.info("client {client_id} connected", client_id="c1")
        service.stopService()
        records = [json.loads(r) for r in self.read().split("\x1e") if r.strip()]
        self.assertEqual(["c1"], [r["client_id"] for r in records])

    def test_rotation(self) -> None:
        """Past C{rotation.size} bytes the file rotates, keeping C{keep} old files."""
        service = self.start(level=LogLevel.info, rotate_bytes=200, keep=2)
        for i in range(40):
            self.log.info("line {i} padded to make the file grow quickly", i=i)
        service.stopService()
        directory = os.path.dirname(self.path)
        names = sorted(os.listdir(directory))
        self.assertEqual(["console.log", "console.log.1", "console.log.2"], names)
        self.assertIn("line 39", self.read())

    def test_stopDetaches(self) -> None:
        """After stopService nothing more is written."""
        service = self.start(level=LogLevel.info)
        service.stopService()
        self.log.info("after stop")
        self.assertNotIn("after stop", self.read())


class ConsoleLogServiceFromConfigTests(SynchronousTestCase):
    """What C{log.console*} keys produce."""

    def test_defaultIsFileAtInfo(self) -> None:
        """VerneMQ's default: C{log.console = file}, level info, ./log/console.log."""
        service = consoleLogService(config_from_text(""))
        assert service is not None
        self.assertEqual(os.path.abspath("./log/console.log"), service.path)
        self.assertEqual(LogLevel.info, service.level)

    def test_offAndConsoleWriteNoFile(self) -> None:
        """C{off} and C{console} leave logging to twistd alone."""
        for where in ("off", "console"):
            self.assertIsNone(consoleLogService(config_from_text(f"log.console = {where}\n")))

    def test_erlangLevelsMap(self) -> None:
        """C{notice} logs as info, C{alert} as critical, C{none} writes no file."""
        def level(name: str) -> LogLevel | None:
            service = consoleLogService(config_from_text(f"log.console.level = {name}\n"))
            return None if service is None else service.level

        self.assertEqual(LogLevel.info, level("notice"))
        self.assertEqual(LogLevel.critical, level("alert"))
        self.assertIsNone(level("none"))

    def test_settingsPassedThrough(self) -> None:
        """File, format and rotation keys reach the service."""
        service = consoleLogService(config_from_text(
            "log.console = both\nlog.console.file = /tmp/x/c.log\n"
            "log.console.file.format = json\nlog.console.rotation.size = 10MB\n"
            "log.console.rotation.keep = 3\n"
        ))
        assert service is not None
        self.assertEqual(("/tmp/x/c.log", True, 10 * 1024 * 1024, 3),
                         (service.path, service.json, service.rotate_bytes, service.keep))
