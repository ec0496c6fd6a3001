"""labctl's measurement protocols, one Protocol subclass per module. They join the protocol
registry (labctl.registry.PROTOCOLS) through the `labctl.protocols` entry points of
pyproject.toml, as a protocol in any other package does; importing this package loads none."""
