"""
Live administration: the command registry behind C{vmq-admin} (and, later,
the HTTP API), its commands, and the C{vmq-admin} console script.
"""
