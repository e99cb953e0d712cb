"""
The cluster plane of vernemq: membership, the replicated metadata store
(L{vernemq.cluster.metadata}), the data channel, readiness and netsplits.

See C{ARCHITECTURE.md} (the control plane) and issue 6.
"""
