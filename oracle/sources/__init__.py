"""Source adapters: each turns one upstream into ``SourceQuote``s (spec/oracle.md §2).

Layout:
  ``base``        the two adapter shapes (``PushSource``, ``PollSource``), ``Backoff``,
                  ``SourceHealth``
  ``scenario``    the scripted-fault and market types of the simulator (reusable by tests)
  ``simulated``   seeded, calendar-aware price paths: the default source of a local node
  ``sse``         an incremental Server-Sent-Events parser (Hermes' stream)
  ``pyth``        Pyth Hermes: REST ``/v2/updates/price/latest`` and the SSE stream
  ``chainlink_report``  Data Streams HMAC signing and v8/v11 report codecs (eth-abi)
  ``chainlink``   Chainlink Data Streams: REST ``/api/v1/reports/latest`` and the websocket
  ``derived``     quotes computed from other quotes: FX conversion, index from its future

Invariants:
  * Adapters report what the upstream said, as integers in its own fixed point; they never
    filter on price, age or session (that is ``oracle/aggregate.py``'s and the service's).
  * Upstream trouble (HTTP errors, disconnects, bad frames) is counted in ``SourceHealth``
    and retried with backoff; an adapter's ``run`` only ends by cancellation.
"""
