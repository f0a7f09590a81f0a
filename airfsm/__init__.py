"""airfsm: a tick-driven controller for AirM2M Air72x LTE modules on Alibaba Cloud IoT."""

__version__ = "0.1.0"
