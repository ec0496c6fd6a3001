"""labctl: control suite for an analog CMO/HfOx 1T1R ReRAM AI chip."""
__version__ = "0.1.0"
