"""
The control plane: the Erlang port mapper (L{vernemq.dist.epmd}) now; the
distribution protocol and the term codec arrive with later issues.
"""
