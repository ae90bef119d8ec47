"""SocketIndex over sock_diag: a dump filtered by remote end answers like a full one for those ends."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from vigil.agent.sensors.net_records import Endpoint
from vigil.agent.sensors.sockets import SocketIndex, remote_filter


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def test_filtered_refresh_keeps_only_the_asked_remote_ends_and_the_listeners(sockets: list[socket.socket]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener6 = socket.socket(socket.AF_INET6)
    listener6.bind(("::", 0))  # dual-stack: an IPv4 peer shows up under its v4-mapped address
    listener6.listen()
    sockets += [listener, listener6]
    port, port6 = listener.getsockname()[1], listener6.getsockname()[1]
    wanted = socket.create_connection(("127.0.0.1", port))
    other = socket.create_connection(("127.0.0.1", port))
    mapped = socket.create_connection(("127.0.0.1", port6))
    sockets += [wanted, other, mapped]
    accepted = [listener.accept()[0], listener.accept()[0], listener6.accept()[0]]
    sockets += accepted
    wanted_end = Endpoint("127.0.0.1", wanted.getsockname()[1])  # the accepted socket's remote end
    mapped_end = Endpoint("127.0.0.1", mapped.getsockname()[1])
    index = SocketIndex()
    index.refresh({wanted_end, mapped_end}, listening=True)
    if index.sock_diag_error is not None:
        pytest.skip(f"sock_diag refused here: {index.sock_diag_error}")
    assert index.filter_error is None, index.filter_error

    found = index.by_remote(wanted_end)
    assert found is not None and found.inode == inode(accepted[0]) and found.local.port == port
    assert index.by_inode(inode(accepted[0])) == found
    v6 = index.by_remote(mapped_end)
    assert v6 is not None and v6.inode == inode(accepted[2]) and v6.local.port == port6
    # Sockets with other remote ends stay in the kernel; listeners come along for accepts.
    assert index.by_inode(inode(accepted[1])) is None and index.by_inode(inode(wanted)) is None
    listening = index.by_inode(inode(listener))
    assert listening is not None and listening.local == Endpoint("127.0.0.1", port)
    assert index.by_inode(inode(listener6)) is not None

    # Without filter and without listeners asked for: everything, as before.
    index.refresh()
    assert index.by_inode(inode(accepted[1])) is not None and index.by_inode(inode(wanted)) is not None
    index.refresh({wanted_end})
    assert index.by_inode(inode(listener)) is None and index.by_inode(inode(accepted[0])) is not None


def test_two_sockets_with_one_remote_end_are_ambiguous_after_a_filtered_refresh(sockets: list[socket.socket]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sockets.append(listener)
    server_end = Endpoint("127.0.0.1", listener.getsockname()[1])
    sockets += [socket.create_connection(("127.0.0.1", server_end.port)) for _ in range(2)]
    index = SocketIndex()
    index.refresh({server_end})
    if index.sock_diag_error is not None:
        pytest.skip(f"sock_diag refused here: {index.sock_diag_error}")
    assert index.by_remote(server_end) is None  # two clients: counted exactly, so not guessed
    index.refresh({server_end, Endpoint("192.0.2.1", 9)})
    assert index.by_remote(server_end) is None
    assert all(index.by_inode(inode(s)) is not None for s in sockets[1:])


def test_remote_filter_bytecode_shape() -> None:
    assert remote_filter([]) is None
    assert remote_filter([Endpoint("not-an-ip", 1)]) is None
    one = remote_filter([Endpoint("127.0.0.1", 80)])
    assert one is not None and len(one) == 16  # op + hostcond + IPv4 address
    two = remote_filter([Endpoint("127.0.0.1", 80), Endpoint("::1", 443)])
    assert two is not None and len(two) == 16 + 4 + 28  # the jump between them
