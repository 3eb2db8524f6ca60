"""The smallest server that speaks the course's API, to measure the remote agent's own ceiling.

It answers `POST /next/<user>` with a track derived from the request and `POST /last/<user>`
with the user, on asyncio + httptools, so that the client, not the server, is what is timed.
Run: python bench/minimal_server.py PORT N_TRACKS
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import httptools


class CourseApiProtocol(asyncio.Protocol):
    def __init__(self, n_tracks: int) -> None:
        self.n_tracks = n_tracks
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = bytearray()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        parts = self.url.decode().strip("/").split("/")
        if len(parts) == 2:
            user = int(parts[1])
            request = json.loads(self.body)
            if parts[0] == "next":
                answer = {"user": user, "track": (request["track"] * 7919 + user) % self.n_tracks}
            else:
                answer = {"user": user}
        else:
            answer = {"status": "alive"}
        body = json.dumps(answer).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.body.clear()


async def serve(port: int, n_tracks: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: CourseApiProtocol(n_tracks), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
