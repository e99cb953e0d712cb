"""
Sessions across nodes (L{vernemq.cluster.sessions}), in memory and
deterministic: the brokers, stores and data-channel queue of
C{tests.test_cluster_routing}, plus a L{FakeNetwork} of distribution
transports for the C{vmq:session_*} calls.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import tests.test_cluster_routing as routing_tests
from tests.brokerhelpers import FakeClient
from tests.clusterhelpers import FakeNetwork, coroutine, run
from vernemq.broker.router import SubOpts
from vernemq.cluster.routing import SUBSCRIBER
from vernemq.cluster.sessions import ClusterSessions, MovedSession, SessionState, pick_node
from vernemq.dist.etf import Atom, decode, encode
from vernemq.mqtt.packets import ConnAck, Connect, Disconnect, Publish

A, B, C = "a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1"
KEY = (b"", b"p")


class SessionCluster:
    """Three routing nodes whose L{ClusterSessions} talk over a L{FakeNetwork}."""

    def __init__(self, *names: str) -> None:
        self.network = FakeNetwork()
        self.routing = routing_tests.FakeCluster(*names)
        #: Members the sessions code counts as running.
        self.running = set(names)
        self.sessions: dict[str, ClusterSessions] = {}
        for name in names:
            node = self.routing[name]
            sessions = ClusterSessions(
                node.broker,
                node.router,
                self.network.transport(name),
                node.harness.clock,
                running=lambda: sorted(self.running),
                send=node._send,
                rpcTimeout=5.0,
                drainTime=0.5,
            )
            sessions.export()
            self.sessions[name] = sessions
        self.routing.form()

    def __getitem__(self, name: str) -> Any:
        return self.routing[name]

    def settle(self) -> None:
        """Deliver metadata and data items."""
        self.routing.settle()

    def kill(self, name: str) -> None:
        """C{name} dies: the others lose it and route among themselves."""
        self.network.kill(name)
        self.running.discard(name)
        del self.routing.nodes[name]
        rest = sorted(self.routing.nodes)
        for node in self.routing.nodes.values():
            node.store.set_members(rest)
            node.router.set_peers([n for n in rest if n != node.name])

    def owner(self, key: tuple[bytes, bytes] = KEY) -> Any:
        """The node every store names for C{key} (asserted equal)."""
        owners = {
            name: (None if (v := node.store.get(SUBSCRIBER, key)) is None else str(v[0]))
            for name, node in self.routing.nodes.items()
        }
        values = set(owners.values())
        assert len(values) == 1, owners
        return values.pop()


class Client(FakeClient):
    """A fake client that keeps what arrived right after its CONNACK."""

    backlog: list[Any]

    def received(self) -> list[Any]:
        backlog, self.backlog = getattr(self, "backlog", []), []
        return backlog + super().received()


def connect(
    node: Any, client_id: str, level: int = 4, clean: bool = True, properties: Any = None
) -> tuple[Client, Any]:
    """A client that sends CONNECT on C{node}: (client, CONNACK)."""
    harness = node.harness
    harness._port += 1
    client = Client(harness, harness.factories["default"], level, harness._port)
    client.send(
        Connect(client_id, protocol_level=level, clean_start=clean, properties=properties or {})
    )
    packets = FakeClient.received(client)
    client.backlog = packets[1:]
    return client, packets[0] if packets else None


def persistent(node: Any, client_id: str = "p", level: int = 4) -> FakeClient:
    """A persistent session subscribed to C{q/#} at QoS 1."""
    props = {"session_expiry_interval": 3600} if level == 5 else None
    client, ack = connect(node, client_id, level, clean=False, properties=props)
    assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
    client.subscribe(("q/#", 1))
    return client


def publishQoS1(node: Any, count: int, prefix: str = "m") -> None:
    """Publish C{count} QoS 1 messages to C{q/x} from a fresh client on C{node}."""
    client = node.client("pub-" + prefix)
    for i in range(count):
        client.publish("q/x", f"{prefix}{i}".encode(), qos=1)
    client.received()


class TakeoverTests(SynchronousTestCase):
    """A client id is live on one node at a time."""

    def setUp(self) -> None:
        self.cluster = SessionCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))

    def test_takeoverAcrossNodesV5(self) -> None:
        """
        The same client id connecting on b: a's connection gets DISCONNECT
        0x8E and is closed, b answers session present, the subscription
        moved with the session and its entry names b everywhere.
        """
        old = persistent(self.a, level=5)
        self.cluster.settle()
        self.assertEqual(self.cluster.owner(), A)
        new, ack = connect(
            self.b, "p", 5, clean=False, properties={"session_expiry_interval": 3600}
        )
        self.assertIsInstance(ack, ConnAck)
        self.assertTrue(ack.session_present)
        self.assertEqual([p.reason_code for p in old.received() if isinstance(p, Disconnect)],
                         [0x8E])
        self.assertTrue(old.closed)
        self.assertNotIn(("", "p"), self.a.broker.sessions)
        self.assertEqual(set(self.b.broker.sessions[("", "p")].subscriptions), {"q/#"})
        self.cluster.settle()
        self.assertEqual(self.cluster.owner(), B)
        self.assertEqual(self.c.router.remote_nodes("", "q/x"), [B])
        publishQoS1(self.c, 1)
        self.cluster.settle()
        self.assertEqual([p.payload for p in new.publishes()], [b"m0"])
        self.assertEqual(self.cluster.sessions[A].counters["takeovers"], 1)

    def test_cleanStartEndsRemoteSession(self) -> None:
        """A clean start elsewhere ends the old session; its entry is deleted."""
        old = persistent(self.a)
        self.cluster.settle()
        _, ack = connect(self.b, "p", clean=True)
        self.assertFalse(ack.session_present)
        self.assertTrue(old.closed)
        self.assertNotIn(("", "p"), self.a.broker.sessions)
        self.assertEqual(self.b.broker.sessions[("", "p")].subscriptions, {})
        self.cluster.settle()
        self.assertIsNone(self.cluster.owner())

    def test_sessionWithoutEntryTakenOver(self) -> None:
        """
        coordinate_registrations: a session with no subscriber entry (no
        subscription) is still found, through the sync node, and closed.
        """
        old, _ = connect(self.a, "bare")
        self.cluster.settle()
        _, ack = connect(self.c, "bare")
        self.assertEqual(ack.reason_code, 0)
        self.assertTrue(old.closed)
        self.assertNotIn(("", "bare"), self.a.broker.sessions)
        self.assertIn(("", "bare"), self.c.broker.sessions)
        sync = pick_node([A, B, C], ("", "bare"))
        calls = self.cluster.network.transports[C].calls
        self.assertIn((sync, "session_register"), [(n, f) for n, f, _ in calls])

    def test_uncoordinatedAsksOwnerOnly(self) -> None:
        """
        coordinate_registrations = off: only the node of the entry is asked
        (a session there moves); a session without an entry is not found.
        """
        for node in (self.a, self.b, self.c):
            node.broker.config = node.broker.config.replace(coordinate_registrations=False)
        persistent(self.a)
        bare, _ = connect(self.a, "bare")
        self.cluster.settle()
        _, ack = connect(self.b, "p", clean=False)
        self.assertTrue(ack.session_present)
        calls = self.cluster.network.transports[B].calls
        self.assertEqual([(n, f) for n, f, _ in calls], [(A, "session_takeover")])
        connect(self.b, "bare")
        self.assertFalse(bare.closed)

    def test_duplicateResolvedByEntries(self) -> None:
        """
        coordinate_registrations = off and two registrations before the
        entries replicated: once they do, the node whose entry lost hands
        its session over to the other; one session remains, with both
        sessions' messages.
        """
        for node in (self.a, self.b, self.c):
            node.broker.config = node.broker.config.replace(coordinate_registrations=False)
        first = persistent(self.a)
        second = persistent(self.b)
        self.cluster.settle()
        owner = self.cluster.owner()
        holders = [n for n in (A, B, C) if ("", "p") in self.cluster[n].broker.sessions]
        self.assertEqual(holders, [owner])
        loser = first if owner == B else second
        self.assertTrue(loser.closed)
        publishQoS1(self.c, 1)
        self.cluster.settle()
        winner = second if owner == B else first
        self.assertEqual([p.payload for p in winner.publishes()], [b"m0"])

    def test_syncNodeUnreachableNotReady(self) -> None:
        """A registration that cannot be coordinated is refused: CONNACK 3 (0x88)."""
        sid = ("", "x")
        sync = pick_node([A, B, C], sid)
        other = next(n for n in (A, B, C) if n != sync)
        self.cluster.network.partition(other, sync)
        client, ack = connect(self.cluster[other], "x")
        self.assertEqual(ack.reason_code, 3)
        self.assertTrue(client.closed)
        self.assertEqual(self.cluster[other].broker.netsplit_errors["mqtt_connect_error"], 1)

    def test_netsplitAllowedRegistersLocally(self) -> None:
        """
        Split with allow_register_during_netsplit: uncoordinated and local;
        an owner that cannot be reached is skipped.
        """
        persistent(self.a)
        self.cluster.settle()
        b = self.b.broker
        b.config = b.config.replace(allow_register_during_netsplit=True)
        b.netsplit = True
        self.cluster.network.partition(A, B)
        _, ack = connect(self.b, "p", clean=False)
        self.assertEqual(ack.reason_code, 0)
        self.assertFalse(ack.session_present)
        self.assertEqual(self.cluster.network.transports[B].calls, [])

    def test_netsplitAllowedStillMovesFromConnectedOwner(self) -> None:
        """Split, but the entry's node is connected: its session still moves."""
        persistent(self.a)
        self.cluster.settle()
        self.cluster.network.connected.add(frozenset((A, B)))
        b = self.b.broker
        b.config = b.config.replace(allow_register_during_netsplit=True)
        b.netsplit = True
        _, ack = connect(self.b, "p", clean=False)
        self.assertTrue(ack.session_present)


class QueueMigrationTests(SynchronousTestCase):
    """A persistent session that reconnects elsewhere takes its queue with it."""

    def setUp(self) -> None:
        self.cluster = SessionCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))

    def test_offlineQueueMoves(self) -> None:
        """
        Ten QoS 1 messages published on c while the session is offline on
        a are queued on a, and delivered, in order, once, on b.
        """
        client = persistent(self.a)
        self.cluster.settle()
        client.disconnect()
        publishQoS1(self.c, 10)
        self.cluster.settle()
        self.assertEqual(len(self.a.broker.sessions[("", "p")].pending), 10)
        new, ack = connect(self.b, "p", clean=False)
        self.assertTrue(ack.session_present)
        got = new.publishes()
        self.assertEqual([p.payload for p in got], [f"m{i}".encode() for i in range(10)])
        self.assertTrue(all(p.qos == 1 and not p.dup for p in got))
        for p in got:
            new.ack(p)
        self.cluster.settle()
        self.assertEqual(new.publishes(), [])
        self.assertEqual(self.cluster.sessions[B].counters["migrated_messages"], 10)
        # New messages now go to b.
        publishQoS1(self.c, 2, "n")
        self.cluster.settle()
        self.assertEqual([p.payload for p in new.publishes()], [b"n0", b"n1"])

    def test_unacknowledgedRedeliveredWithDup(self) -> None:
        """
        Messages sent but not acknowledged on a come again on b, with DUP
        and their packet ids (QoS 1: at least once).
        """
        client = persistent(self.a)
        self.cluster.settle()
        publishQoS1(self.c, 3)
        self.cluster.settle()
        first = client.publishes()
        self.assertEqual(len(first), 3)
        client.ack(first[0])
        client.lose()
        new, ack = connect(self.b, "p", clean=False)
        self.assertTrue(ack.session_present)
        again = new.publishes()
        self.assertEqual([(p.payload, p.dup) for p in again], [(b"m1", True), (b"m2", True)])
        self.assertEqual([p.packet_id for p in again], [p.packet_id for p in first[1:]])

    def test_onlineSessionMovesWithQueue(self) -> None:
        """
        Taking over a session that is online moves what it has not
        delivered; nothing is lost.
        """
        client = persistent(self.a)
        self.cluster.settle()
        publishQoS1(self.c, 4)
        self.cluster.settle()
        self.assertEqual(len(client.publishes()), 4)  # never acknowledged
        new, ack = connect(self.b, "p", clean=False)
        self.assertTrue(ack.session_present)
        self.assertEqual(
            [p.payload for p in new.publishes()], [b"m0", b"m1", b"m2", b"m3"]
        )

    def test_stragglersForwarded(self) -> None:
        """
        A message that still reaches a after the session moved (stale
        routing) is sent on to b, within max_drain_time; then the
        stand-in is gone.
        """
        persistent(self.a)
        self.cluster.settle()
        new, _ = connect(self.b, "p", clean=False)
        # Published on a itself before anything settled: a's trie holds the
        # stand-in, which sends it on to b.
        publishQoS1(self.a, 1, "late")
        self.cluster.settle()
        self.assertEqual([p.payload for p in new.publishes()], [b"late0"])
        self.assertEqual(self.cluster.sessions[A].counters["forwarded"], 1)
        self.a.harness.advance(1.0)
        matches = self.a.broker.topics("").trie.match("q/x")
        self.assertFalse([s for s, _ in matches if isinstance(s, MovedSession)])

    def test_stateRoundTrip(self) -> None:
        """A session's state crosses as ETF and reads back."""
        client = persistent(self.a, level=5)
        self.cluster.settle()
        publishQoS1(self.c, 2)
        self.cluster.settle()
        client.lose()
        session = self.a.broker.sessions[("", "p")]
        state = self.cluster.sessions[A].hand_over(session, B, migrate=True)
        assert state is not None
        term = decode(encode(state.to_term(self.a.router)))
        back = SessionState.from_term(self.b.router, term)
        self.assertEqual(back.sid, ("", "p"))
        self.assertEqual(back.expiry, 3600)
        self.assertEqual(set(back.subscriptions), {"q/#"})
        self.assertEqual([e[5].payload for e in back.inflight], [b"m0", b"m1"])
        self.assertRaises(ValueError, SessionState.from_term, self.b.router, (Atom("x"),))


class LeaveTests(SynchronousTestCase):
    """cluster leave -k and the queues of a dead node."""

    def setUp(self) -> None:
        self.cluster = SessionCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))

    def test_leaveMigratesQueues(self) -> None:
        """
        migrateQueues (after the sessions were killed) moves every
        persistent session with its messages to the remaining nodes; new
        messages are queued there; the client finds its session present.
        """
        ids = [f"p{i}" for i in range(6)]
        clients = [persistent(self.a, cid) for cid in ids]
        clean, _ = connect(self.a, "clean")
        self.cluster.settle()
        for client in clients:
            client.disconnect()
        publishQoS1(self.c, 3)
        self.cluster.settle()
        result = run(coroutine(self.cluster.sessions[A].migrateQueues([B, C])))
        self.assertEqual(result, (6, 18))
        self.assertEqual(
            sorted(sid for sid in self.a.broker.sessions), [("", "clean")]
        )
        self.cluster.settle()
        for cid in ids:
            target = pick_node([B, C], ("", cid))
            self.assertEqual(self.cluster.owner((b"", cid.encode())), target)
            self.assertEqual(len(self.cluster[target].broker.sessions[("", cid)].pending), 3)
        publishQoS1(self.c, 1, "n")
        self.cluster.settle()
        cid = ids[0]
        target = self.cluster[pick_node([B, C], ("", cid))]
        new, ack = connect(target, cid, clean=False)
        self.assertTrue(ack.session_present)
        self.assertEqual(
            [p.payload for p in new.publishes()], [b"m0", b"m1", b"m2", b"n0"]
        )

    def test_leaveHooksWired(self) -> None:
        """The node's composition fills the leave hooks."""
        node, _ = routing_tests.CompositionTests("test_composed").node()
        cluster = node.cluster
        self.assertEqual(cluster.membership.hooks.migrateQueues, cluster.sessions.migrateQueues)
        self.assertEqual(cluster.membership.hooks.fixDeadQueues, cluster.sessions.fixDeadQueues)
        self.assertIs(node.broker.cluster_sessions, cluster.sessions)

    def test_fixDeadQueues(self) -> None:
        """
        a dies: its persistent sessions' subscriptions are recreated on b
        or c (new messages queue there), its clean sessions' entries go.
        """
        persistent(self.a, "p")
        clean = self.a.client("cs")
        clean.subscribe(("q/#", 1))
        self.cluster.settle()
        self.assertEqual(self.cluster.owner((b"", b"cs")), A)
        self.cluster.kill(A)
        fixed = run(coroutine(self.cluster.sessions[B].fixDeadQueues([A], [B, C])))
        self.assertEqual(fixed, 1)
        self.cluster.settle()
        target = pick_node([B, C], ("", "p"))
        self.assertEqual(self.cluster.owner(), target)
        self.assertIsNone(self.cluster.owner((b"", b"cs")))
        publishQoS1(self.cluster[B if target == C else C], 2)
        self.cluster.settle()
        new, ack = connect(self.cluster[target], "p", clean=False)
        self.assertTrue(ack.session_present)
        self.assertEqual([p.payload for p in new.publishes()], [b"m0", b"m1"])


class PickTests(SynchronousTestCase):
    """pick_node."""

    def test_stable(self) -> None:
        """The same sid maps to the same node whatever the order; empty raises."""
        self.assertEqual(pick_node([A, B, C], ("", "x")), pick_node([C, A, B], ("", "x")))
        self.assertIn(pick_node([A, B], ("", "y")), (A, B))
        self.assertRaises(ValueError, pick_node, [], ("", "x"))


__all__ = ["SessionCluster", "Publish"]


class LiveEntryTests(SynchronousTestCase):
    """
    A session connected on a node keeps its subscriber entry against a
    later deletion or a write for an offline session made across a split.
    """

    def setUp(self) -> None:
        self.cluster = SessionCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))

    def split(self) -> None:
        """Cut b from a and c (metadata and distribution); b allows CONNECT."""
        self.cluster.routing.metadata.partition([A, C], [B])
        self.cluster.network.partition(A, B)
        self.cluster.network.partition(B, C)
        b = self.b.broker
        b.config = b.config.replace(
            allow_register_during_netsplit=True, allow_subscribe_during_netsplit=True
        )
        b.netsplit = True

    def heal(self) -> None:
        """Join b again, and repair the stores (anti-entropy)."""
        self.cluster.routing.metadata.heal()
        self.cluster.network.heal(A, B)
        self.cluster.network.heal(B, C)
        self.b.broker.netsplit = False
        for _ in range(3):
            for node in (self.a, self.b, self.c):
                node.store.anti_entropy()
            self.cluster.settle()

    def assertRoutesToA(self, client: FakeClient, payload: bytes) -> None:
        """A publish from c reaches C{client}, live on a."""
        self.assertEqual(self.cluster.owner(), A)
        self.assertEqual(self.c.router.remote_nodes("", "q/x"), [A])
        self.c.client("pub-" + payload.decode()).publish("q/x", payload, qos=1)
        self.cluster.settle()
        self.assertEqual([p.payload for p in client.publishes()], [payload])

    def test_tombstoneAcrossSplitReasserted(self) -> None:
        """
        Live on a; during a split the same client id connects and ends its
        clean session on b (a tombstone newer than a's entry): after the
        heal a writes its entry again and publishes from c reach it.
        """
        live, ack = connect(self.a, "p")
        self.assertEqual(ack.reason_code, 0)
        live.subscribe(("q/#", 1))
        self.cluster.settle()
        self.assertEqual(self.cluster.owner(), A)
        self.split()
        other, ack = connect(self.b, "p")
        self.assertEqual(ack.reason_code, 0)
        other.subscribe(("q/#", 1))
        other.disconnect()
        self.cluster.settle()
        self.assertIsNone(self.b.store.get(SUBSCRIBER, KEY))
        self.assertFalse(live.closed)
        self.heal()
        self.assertFalse(live.closed)
        self.assertIn(("", "p"), self.a.broker.sessions)
        self.assertRoutesToA(live, b"after")

    def test_tombstoneWithoutSubscribingOnB(self) -> None:
        """The same when the session on b never subscribed (b deletes a's entry)."""
        live, _ = connect(self.a, "p")
        live.subscribe(("q/#", 1))
        self.cluster.settle()
        self.split()
        other, ack = connect(self.b, "p")
        self.assertEqual(ack.reason_code, 0)
        other.disconnect()
        self.cluster.settle()
        self.assertIsNone(self.b.store.get(SUBSCRIBER, KEY))
        self.heal()
        self.assertFalse(live.closed)
        self.assertRoutesToA(live, b"x")

    def test_offlineSessionAcrossSplitYields(self) -> None:
        """
        A persistent session of the same client id left offline on b during
        the split (its entry newer than a's): the connected session on a
        keeps its connection and the entry; b's queue moves to a.
        """
        live = persistent(self.a)
        self.cluster.settle()
        self.split()
        other, ack = connect(self.b, "p", clean=False)
        self.assertEqual(ack.reason_code, 0)
        other.subscribe(("q/#", 1))
        other.disconnect()
        self.cluster.settle()
        self.assertEqual(str(self.b.store.get(SUBSCRIBER, KEY)[0]), B)
        self.heal()
        self.assertFalse(live.closed)
        self.assertNotIn(("", "p"), self.b.broker.sessions)
        self.assertRoutesToA(live, b"y")

    def test_bothConnectedOneRemains(self) -> None:
        """
        Connected on both sides of a split: after the heal one session
        remains (the newer entry's), without re-assertion loops.
        """
        first = persistent(self.a)
        self.cluster.settle()
        self.split()
        second = persistent(self.b)
        self.cluster.settle()
        self.heal()
        owner = self.cluster.owner()
        self.assertEqual(owner, B)
        self.assertTrue(first.closed)
        self.assertFalse(second.closed)
        holders = [n for n in (A, B, C) if ("", "p") in self.cluster[n].broker.sessions]
        self.assertEqual(holders, [B])
        writes = {n: self.cluster[n].store.version(SUBSCRIBER, KEY) for n in (A, B, C)}
        self.cluster.settle()
        self.assertEqual(
            writes, {n: self.cluster[n].store.version(SUBSCRIBER, KEY) for n in (A, B, C)}
        )


class MovedExpiryTests(SynchronousTestCase):
    """
    A session that moves keeps counting its expiry: offline 40 s of a 60 s
    expiry on one node, moved, it expires 20 s later on the other, not 60.
    """

    SID = ("", "p")

    def setUp(self) -> None:
        self.cluster = SessionCluster(A, B, C)
        self.a, self.b, self.c = (self.cluster[n] for n in (A, B, C))

    def offlineOnA(self, expiry: int = 60) -> None:
        """A v5 session on a, C{expiry} seconds, subscribed, then gone."""
        client, ack = connect(
            self.a, "p", 5, clean=False, properties={"session_expiry_interval": expiry}
        )
        self.assertEqual(ack.reason_code, 0)
        client.subscribe(("q/#", 1))
        self.cluster.settle()
        client.disconnect()
        self.assertIn(self.SID, self.a.broker.sessions)

    def move(self, source: str, target: str) -> SessionState:
        """Hand the session on C{source} over to C{target} as ETF, install it there."""
        session = self.cluster[source].broker.sessions[self.SID]
        state = self.cluster.sessions[source].hand_over(session, target, migrate=True)
        assert state is not None
        term = decode(encode(state.to_term(self.cluster[source].router)))
        back = SessionState.from_term(self.cluster[target].router, term)
        self.cluster.sessions[target].install(back)
        self.cluster.settle()
        return back

    def assertExpiresAfter(self, node: Any, seconds: float) -> None:
        """The session on C{node} is there until C{seconds} from now, then not."""
        node.harness.advance(seconds - 0.1)
        self.assertIn(self.SID, node.broker.sessions)
        node.harness.advance(0.2)
        self.assertNotIn(self.SID, node.broker.sessions)

    def test_leaveMigrationKeepsExpiry(self) -> None:
        """
        cluster leave -k: a session offline 40 s of 60 on a, migrated to
        b, expires 20 s later on b; its subscriber entry then goes.
        """
        self.offlineOnA(60)
        self.a.harness.advance(40)
        result = run(coroutine(self.cluster.sessions[A].migrateQueues([B])))
        self.assertEqual(result, (1, 0))
        self.cluster.settle()
        self.assertEqual(self.cluster.owner(), B)
        self.assertEqual(self.b.broker.sessions[self.SID].expiry, 60)
        self.assertExpiresAfter(self.b, 20)
        self.cluster.settle()
        self.assertIsNone(self.cluster.owner())

    def test_stateCarriesOfflineTime(self) -> None:
        """The state says how long it was offline; it crosses as ETF."""
        self.offlineOnA(60)
        self.a.harness.advance(40)
        back = self.move(A, B)
        self.assertEqual(back.offline, 40.0)
        self.assertEqual(back.expiry, 60)
        self.assertExpiresAfter(self.b, 20)

    def test_connectedUntilMovedStartsAfresh(self) -> None:
        """A session connected until it moved (offline 0): its full expiry."""
        client, _ = connect(
            self.a, "p", 5, clean=False, properties={"session_expiry_interval": 60}
        )
        client.subscribe(("q/#", 1))
        self.cluster.settle()
        self.a.harness.advance(40)
        back = self.move(A, B)
        self.assertEqual(back.offline, 0.0)
        self.assertExpiresAfter(self.b, 60)

    def test_movedTwice(self) -> None:
        """Offline 40 s on a, 10 s on b, moved to c: it expires 10 s later on c."""
        self.offlineOnA(60)
        self.a.harness.advance(40)
        self.move(A, B)
        self.b.harness.advance(10)
        back = self.move(B, C)
        self.assertAlmostEqual(back.offline, 50.0)
        self.assertExpiresAfter(self.c, 10)

    def test_expiredOnArrival(self) -> None:
        """Offline longer than the expiry it gets: it ends on arrival."""
        state = SessionState(self.SID, 30, offline=45.0)
        state.subscriptions["q/#"] = SubOpts(1)
        self.cluster.sessions[B].install(state)
        self.assertIn(self.SID, self.b.broker.sessions)
        self.b.harness.advance(0)
        self.assertNotIn(self.SID, self.b.broker.sessions)
        self.cluster.settle()
        self.assertIsNone(self.cluster.owner())

    def test_neverExpires(self) -> None:
        """A session that never expires still never does."""
        state = SessionState(self.SID, None, offline=1e6)
        self.cluster.sessions[B].install(state)
        self.b.harness.advance(1e7)
        self.assertIn(self.SID, self.b.broker.sessions)

    def test_olderTermShape(self) -> None:
        """
        The nine-element term of older nodes (no offline time) is read: the
        session counts as offline since it arrives.  A bad offline time is
        refused.
        """
        state = SessionState(self.SID, 60, offline=40.0)
        term = state.to_term(self.a.router)
        self.assertEqual(len(term), 10)
        self.assertEqual(term[9], 40000)
        old = SessionState.from_term(self.b.router, term[:9])
        self.assertEqual((old.expiry, old.offline), (60, 0.0))
        self.cluster.sessions[B].install(old)
        self.assertExpiresAfter(self.b, 60)
        for bad in (b"x", -1.5, Atom("true")):
            self.assertRaises(
                ValueError, SessionState.from_term, self.b.router, (*term[:9], bad)
            )

    def test_deadNodeCountsFromNodeDown(self) -> None:
        """
        A dead node's persistent session, recreated 40 s after b lost its
        connection to the dead node, with b's persistent_client_expiration
        of 60 s: it expires 20 s later.
        """
        self.b.broker.config = self.b.broker.config.replace(persistent_client_expiration=60)
        persistent(self.a, "p")
        self.cluster.settle()
        self.cluster.network.transport(B).call(A, "session_connected", [b"", b"p"], 1.0)
        self.cluster.kill(A)
        self.b.harness.advance(40)
        fixed = run(coroutine(self.cluster.sessions[B].fixDeadQueues([A], [B])))
        self.assertEqual(fixed, 1)
        self.cluster.settle()
        self.assertEqual(self.cluster.owner(), B)
        self.assertExpiresAfter(self.b, 20)

    def test_deadNodeDownTimeUnknown(self) -> None:
        """Never connected to the dead node here: the full expiry."""
        self.b.broker.config = self.b.broker.config.replace(persistent_client_expiration=60)
        persistent(self.a, "p")
        self.cluster.settle()
        self.b.harness.advance(40)
        run(coroutine(self.cluster.sessions[B].fixDeadQueues([A], [B])))
        self.assertExpiresAfter(self.b, 60)
