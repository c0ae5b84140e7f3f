"""The client-facing OpenAI protocol: inbound models and outbound wire shapes; no I/O."""
