"""A minimal blocking websocket client on wsproto, for the tests."""

import socket

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage


class WebSocketClient:
    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path)))
        self._pending = []
        event = self._next()
        if not isinstance(event, AcceptConnection):
            raise AssertionError("websocket not accepted: %r" % (event,))

    def _next(self):
        while not self._pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self._pending.extend(self.ws.events())
            if not data and not self._pending:
                raise ConnectionError("closed")
        return self._pending.pop(0)

    def send(self, text):
        self.sock.sendall(self.ws.send(Message(data=text)))

    def receive(self):
        event = self._next()
        if isinstance(event, TextMessage):
            return event.data
        if isinstance(event, CloseConnection):
            return None
        raise AssertionError("unexpected %r" % (event,))

    def close(self):
        self.sock.close()
