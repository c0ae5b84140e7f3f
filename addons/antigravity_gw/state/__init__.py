"""State the gateway keeps on disk for its APIs (the Responses API's stored responses), off the event loop."""
