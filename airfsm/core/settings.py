"""Sizes of the tick path's fixed buffers. C twin: `port/c/core/settings.h`.

Every buffer the tick uses is allocated once, when the controller (or its AT channel) is made,
with these sizes; nothing in the tick grows a buffer. A C port declares them as arrays of these
sizes in its controller struct (the generated header exports them).
"""

from __future__ import annotations

# The AT channel (airfsm.core.at).
LINE_CAPACITY = 2048  # one received line; a longer one is dropped and counted
DATA_CAPACITY = 4096  # one length-counted payload (+MSUB message, +HTTPREAD body)
MAX_INFO_LINES = 8  # info lines kept per response; more are dropped and counted
# A response's info lines and its +HTTPREAD body, as (offset, length) spans of one arena: room
# for a full body after a line of full length.
INFO_ARENA = LINE_CAPACITY + DATA_CAPACITY
READ_CHUNK = 512  # bytes taken from the port per read

# The controller (airfsm.core.controller).
CMD_CAPACITY = 1280  # one command and its CR: the longest AT+MPUB is 1169 bytes
BODY_CAPACITY = 512  # the HTTP auth body (airfsm.core.aliyun.auth_body)
OUTBOX_RING = 1000  # messages a MemoryOutbox holds by default (and as many dead letters)
