"""A paho client that reads the broker's stream in large chunks: for ingest's 10,000s of messages a second.

paho 2 reads every packet with three or more ``recv`` calls (one byte of command, the length
byte by byte, then the body) and handles one packet per ``select`` of its network loop. Under a
flood of small QoS 1 publishes those system calls are a large share of the client's time. This
client wraps the socket in a read buffer (one ``recv`` of up to 256 KB serves hundreds of packets;
``pending()`` tells paho's loop that buffered bytes are waiting, the same hook paho uses for TLS)
and reads packets until the buffer and the socket are empty before it selects again. A QoS 0 or 1
PUBLISH without MQTT 5 properties — what devices send — is decoded in a few slices and handed
straight to ``on_message`` (paho's generic decoder parses an empty property list into objects and
matches the topic against per-topic callbacks for every message: half of the network thread's time
at 10,000 msg/s); any other packet, and any client with per-topic callbacks, goes through paho.
Everything else — the protocol, sessions, acknowledgements, reconnects — is paho's own.

TLS and websocket transports keep paho's own socket (their wrappers buffer already).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

CHUNK = 256 * 1024
MAX_PACKETS_PER_READ = 5000  # then paho's loop gets a turn to write acknowledgements and keepalives


class BufferedSocket:
    """A TCP socket whose reads come from a userspace buffer filled by large ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes: from the buffer, else one large read (raises BlockingIOError like a socket)."""
        if self._offset >= len(self._buffer):
            data = self._sock.recv(CHUNK)  # BlockingIOError and b"" (closed) pass through unchanged
            if not data or len(data) <= size:
                return data
            self._buffer, self._offset = data, 0
        start = self._offset
        self._offset = start + size
        return self._buffer[start:self._offset]

    def pending(self) -> int:
        """Bytes read from the socket but not yet handed to paho (paho's loop then skips its wait)."""
        return len(self._buffer) - self._offset

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, …
        return getattr(self._sock, name)


class FastClient(mqtt.Client):
    """paho's Client with buffered reads and many packets per loop turn (see the module docstring)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl and self._transport in ("tcp", "unix"):
            return BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read packets until nothing more is waiting (or MAX_PACKETS_PER_READ), not one per select."""
        for _ in range(max(max_packets, MAX_PACKETS_PER_READ)):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        """A QoS 0/1 PUBLISH without properties, decoded here and given to `on_message`; others to paho."""
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        size = len(packet)
        # Per-topic callbacks (message_callback_add) need paho's matching; an unknown paho layout counts as some.
        filtered = getattr(getattr(self._on_message_filtered, "_root", None), "_children", True)
        if qos == 2 or size < 2 or filtered:
            return super()._handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])  # topic length, then the topic
        start = end + 2 if qos else end  # the packet id
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            if start >= size or packet[start] != 0:  # properties present (or a malformed packet): paho's
                return super()._handle_publish()
            start += 1
        if start > size or (end == 2 and self._protocol != MQTTProtocolVersion.MQTTv5):  # MQTT 3: empty topic
            return super()._handle_publish()  # paho raises its MalformedPacket
        message = mqtt.MQTTMessage(mid=(packet[end] << 8) | packet[end + 1] if qos else 0,
                                   topic=bytes(packet[2:end]))
        message.qos, message.dup, message.retain = qos, bool(header & 0x08), bool(header & 0x01)
        message.payload = bytes(packet[start:])
        message.timestamp = time.monotonic()
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
