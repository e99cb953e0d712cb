# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin: C{twistd vernemq -c vernemq.conf}.

L{Options} reads and validates the configuration while twistd parses the
command line, so a bad file stops the start before any port is bound.
L{makeService} is the one place that hands the global reactor to the node.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.python import usage

from vernemq.config import Config, ConfigError, load_config


class Options(usage.Options):
    """Command line of C{twistd vernemq}."""

    synopsis = "[-c vernemq.conf]"
    longdesc = (
        "Run a VerneMQ-compatible MQTT broker node configured by a vernemq.conf "
        "file in VerneMQ's own format."
    )
    optParameters = [
        ["config", "c", "vernemq.conf", "Path to the node's vernemq.conf."],
    ]

    #: Where configuration errors are written; replaced in tests.
    stderr: IO[str] = sys.stderr

    def postOptions(self) -> None:
        """
        Load the configuration.  A bad file prints
        C{PATH:LINE: KEY: reason} on stderr and exits with status 2.
        """
        try:
            self["loaded"] = load_config(self["config"])
        except ConfigError as error:
            self.stderr.write(f"{error}\n")
            self.stderr.flush()
            raise SystemExit(2) from None


def makeService(options: Options) -> Any:
    """Build the node's service tree on the global reactor."""
    from twisted.internet import reactor

    from vernemq.node import makeNodeService

    config: Config = options["loaded"]
    try:
        return makeNodeService(config, reactor)
    except ConfigError as error:
        # Problems only composing finds (a TLS certificate that does not
        # load), reported as load_config reports the others.
        options.stderr.write(f"{error}\n")
        options.stderr.flush()
        raise SystemExit(2) from None
