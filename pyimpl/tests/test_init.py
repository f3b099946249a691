"""Starting and joining: bad addresses fail fast and clearly; re-init is explicit."""

from __future__ import annotations

import secrets
import socket
import time

import pytest

import refrpc

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("address", ["127.0.0.1:7001", "http://127.0.0.1:7001", "tcp://127.0.0.1", "", 7001])
def test_a_malformed_cluster_address_is_refused_at_once(address: object) -> None:
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        refrpc.init(address=address)  # type: ignore[arg-type]
    assert not refrpc.is_initialized()


def test_an_address_where_no_head_answers_fails_within_seconds_naming_it(tmp_path) -> None:
    from refrpc.transport import ClusterKey
    from refrpc.transport._curve import HeadKey

    ClusterKey(secrets.token_bytes(32), head=HeadKey.generate().public).save(tmp_path / "cluster.key")
    with socket.socket() as s:  # a port nobody listens on (bound, then closed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(refrpc.RefRPCError, match=address):
        refrpc.init(address=address, connect_timeout=2.0, key_file=tmp_path / "cluster.key")
    assert time.monotonic() - started < 15  # not the old 60 s
    assert not refrpc.is_initialized()


def test_init_again_raises_unless_told_to_ignore_it() -> None:
    refrpc.init(1)
    try:
        node = refrpc.api._ctx.node
        refrpc.init(1, ignore_reinit_error=True)  # no error, nothing started
        assert refrpc.api._ctx.node is node
        with pytest.raises(refrpc.RefRPCError, match="already initialized"):
            refrpc.init(1)
    finally:
        refrpc.shutdown()
