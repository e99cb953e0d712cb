"""The twistd plugin is discoverable and lazy."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject


class PluginTests(SynchronousTestCase):
    """C{twistd vernemq} resolves to L{vernemq.tap}."""

    def test_discovered(self) -> None:
        """getPlugins finds exactly one C{vernemq} service maker providing the interfaces."""
        makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "vernemq"]
        self.assertTrue(makers)
        maker = makers[0]
        verifyObject(IServiceMaker, maker)
        verifyObject(IPlugin, maker)
        from vernemq import tap

        self.assertIs(tap.Options, maker.options)
        self.assertIs(tap.makeService, maker.makeService)
