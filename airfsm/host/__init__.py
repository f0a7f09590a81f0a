"""Linux-only: serial ports, the select loop, logging, storage, configuration, the gateway."""
