"""
vernemq: VerneMQ, the clustered MQTT broker, rebuilt in Python on Twisted.

Run a node with C{twistd vernemq -c vernemq.conf}.
"""

__version__ = "0.1.0"
