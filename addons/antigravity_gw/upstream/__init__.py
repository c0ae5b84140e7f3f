"""The Google side: protocol facts (pure) and the I/O that uses them."""
