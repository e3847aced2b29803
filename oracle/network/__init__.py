"""The oracle as a network of independent nodes.

Each node ingests on its own, computes every decision itself, and has its own signer sign only the report
its own decision engine produced. Nodes exchange those signatures over authenticated HTTP; when k of
them sign the same EIP-712 digest, a deterministically scheduled node transmits the report through its
durable outbox, and the next in line takes over after a timeout.

- :mod:`oracle.network.membership`: the network file (members, signer addresses, peer URLs, k) and a
  node's own identity key for peer messages.
- :mod:`oracle.network.auth`: signing and checking peer requests (no peer message is taken unsigned).
- :mod:`oracle.network.schedule`: who transmits a round, and when the next in line takes over.
- :mod:`oracle.network.rounds`: a round per (subject, epoch): own signature, peers' signatures,
  disagreements, transmission, landing.
- :mod:`oracle.network.peer`: the peer HTTP endpoints and the client that calls them.
- :mod:`oracle.network.init`: ``oracle network init`` (a local development network).
"""
