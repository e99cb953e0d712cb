"""
Every kind of MQTT listener VerneMQ offers: TCP and unix sockets, TLS
(L{vernemq.listeners.tls}), WebSocket (L{vernemq.listeners.websocket}),
the PROXY protocol (L{vernemq.listeners.proxy}), composed per listener by
L{vernemq.listeners.compose} and controlled live through
L{vernemq.listeners.registry}.
"""
