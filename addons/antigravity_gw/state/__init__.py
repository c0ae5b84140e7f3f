"""State the gateway keeps on disk for its APIs (the Responses API's stored responses), off the event loop,
and the batching SQLite writer it shares with the usage ledger (``batch_writer.py``)."""
