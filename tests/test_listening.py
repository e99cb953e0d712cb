"""L{vernemq.listening.ListenerService}: bind early, report the real address."""

from __future__ import annotations

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from vernemq.listening import ListenerBindError, ListenerService


class FailingEndpoint:
    """An endpoint whose listen fails at once, like a port already in use."""

    def listen(self, factory: Factory) -> object:
        from twisted.internet.defer import fail
        from twisted.internet.error import CannotListenError

        return fail(CannotListenError("127.0.0.1", 1883, OSError(98, "Address already in use")))


class RecordingPort:
    """A listening port that remembers whether it was stopped."""

    stopped = False

    def stopListening(self) -> None:
        self.stopped = True


class RecordingEndpoint:
    """An endpoint that listens at once on a L{RecordingPort}."""

    def __init__(self) -> None:
        self.port = RecordingPort()

    def listen(self, factory: Factory) -> object:
        from twisted.internet.defer import succeed

        return succeed(self.port)


class ListenerServiceTests(SynchronousTestCase):
    """Listening services of the node."""

    def test_bindsInPrivilegedStart(self) -> None:
        """privilegedStartService binds, startService does not bind twice."""
        reactor = MemoryReactor()
        service = ListenerService("mqtt tcp.default", "tcp:1883:interface=127.0.0.1",
                                  TCP4ServerEndpoint(reactor, 1883, interface="127.0.0.1"),
                                  Factory.forProtocol(Protocol))
        service.privilegedStartService()
        service.startService()
        self.assertEqual(1, len(reactor.tcpServers))
        self.assertEqual(1883, reactor.tcpServers[0][0])
        self.assertIsNotNone(service.port)

    def test_bindFailureIsSynchronous(self) -> None:
        """A port in use raises L{ListenerBindError} naming the listener."""
        service = ListenerService("mqtt tcp.default", "tcp:1883", FailingEndpoint(),  # type: ignore[arg-type]
                                  Factory.forProtocol(Protocol))
        error = self.assertRaises(ListenerBindError, service.privilegedStartService)
        self.assertIn("mqtt tcp.default", str(error))
        self.assertIn("tcp:1883", str(error))

    def test_stopStopsListening(self) -> None:
        """stopService releases the port."""
        endpoint = RecordingEndpoint()
        service = ListenerService("x", "tcp:1", endpoint,  # type: ignore[arg-type]
                                  Factory.forProtocol(Protocol))
        service.startService()
        self.assertIs(service.port, endpoint.port)
        self.successResultOf(service.stopService())
        self.assertIsNone(service.port)
        self.assertTrue(endpoint.port.stopped)
