"""An example labctl protocol package (docs/writing-a-protocol.md)."""
