"""The multi-host test bed itself (refrpc.testing.hosts): isolation, shaping, cuts, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from refrpc.testing import hosts, wait_until

WHY = hosts.unavailable()
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(bool(WHY), reason=WHY or "")]

_SERVER = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
           "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen();print('up',flush=True)\n"
           "while True:\n c=s.accept()[0]\n while c.recv(1<<16): pass\n c.close()\n")


@pytest.fixture(scope="module")
def bed():
    with hosts.HostBed(3) as b:
        server = b.spawn(2, [sys.executable, "-c", _SERVER, "5000"], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "up"
        yield b


def test_each_host_has_its_own_hostname_address_and_dev_shm(bed):
    one = bed.run(1, ["sh", "-c", "hostname; touch /dev/shm/only-on-h1; ls /dev/shm; ip -4 -br addr show eth0"],
                  check=True).stdout.split()
    two = bed.run(2, ["sh", "-c", "hostname; ls /dev/shm"], check=True).stdout.split()
    assert one[:2] == ["h1", "only-on-h1"] and bed.address(1) + "/24" in one
    assert two == ["h2"]  # h1's file is not in h2's /dev/shm...
    assert not os.path.exists("/dev/shm/only-on-h1")  # ...nor in this machine's
    assert bed.shm(1) == ["only-on-h1"] and bed.shm(2) == []
    assert bed.run(3, ["sh", "-c", "echo $TMPDIR"]).stdout.strip().endswith("/h3")


def test_cuts_one_way_and_both_ways_and_heal(bed):
    assert bed.can_reach(1, 2, 5000) and bed.can_reach(3, 2, 5000)
    bed.cut(1, 2)
    try:
        assert not bed.can_reach(1, 2, 5000)
        assert bed.can_reach(3, 2, 5000)  # only the pair is cut
    finally:
        bed.heal(1, 2)
    assert bed.can_reach(1, 2, 5000)
    bed.partition([1], [2, 3])
    bed.heal()
    assert bed.can_reach(1, 2, 5000)
    bed.isolate(2)
    try:
        assert not bed.can_reach(3, 2, 5000)
    finally:
        bed.rejoin(2)
    assert bed.can_reach(3, 2, 5000)


def test_a_shaped_link_is_no_faster_than_its_rate(bed):
    # 8 Mbit/s is 1 MB/s: 1.5 MB cannot cross in under one second (a lower bound only:
    # a slow machine makes it slower, never faster).
    bed.shape(1, "8mbit", burst="32kb")
    try:
        qdisc = subprocess.run(["tc", "-n", bed.host(1).netns, "qdisc", "show", "dev", "eth0"], capture_output=True,
                               text=True).stdout
        assert "tbf" in qdisc and "8Mbit" in qdisc
        send = (f"import socket,time\ns=socket.create_connection(({bed.address(2)!r},5000))\nt=time.monotonic()\n"
                "s.sendall(b'x'*1_500_000);s.shutdown(socket.SHUT_WR);s.recv(1)\nprint(time.monotonic()-t)\n")
        took = float(bed.run(1, [sys.executable, "-c", send], timeout=60, check=True).stdout)
        assert took >= 1.0, took
    finally:
        bed.unshape(1)


def test_a_bed_leaves_nothing_behind_also_when_killed(tmp_path):
    with hosts.HostBed(2) as b:
        b.spawn(1, ["sleep", "600"])
        b.run(1, ["sh", "-c", "touch /dev/shm/seg"], check=True)
        assert b.leftovers()  # it exists while open
    assert b.leftovers() == []
    # A process holding a bed is killed with SIGKILL: the next bed sweeps its leftovers.
    script = ("import sys,time\nfrom refrpc.testing import hosts\nb=hosts.HostBed(2)\nb.spawn(1,['sleep','600'])\n"
              "print(b.name,flush=True)\ntime.sleep(600)\n")
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    name = victim.stdout.readline().strip()
    assert name.startswith(hosts.PREFIX)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert any(ns.startswith(name) for ns in hosts._namespaces())
    assert hosts.sweep_stale()
    assert not any(ns.startswith(name) for ns in hosts._namespaces())
    # SIGTERM: the bed cleans up itself before the process dies.
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    name = victim.stdout.readline().strip()
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(30) == -signal.SIGTERM
    assert not any(ns.startswith(name) for ns in hosts._namespaces())
    assert wait_until(lambda: not os.path.exists(os.path.join(hosts._bed_root(), name)), 5)


def test_a_lost_host_has_no_process_left():
    with hosts.HostBed(2) as b:
        b.spawn(2, ["sleep", "600"])
        b.run(2, ["sh", "-c", "touch /dev/shm/seg"], check=True)
        assert len(b.pids(2)) == 2  # the host's anchor and the sleep
        b.lose(2)
        assert b.pids(2) == []
        with pytest.raises(hosts.BedError):
            b.spawn(2, ["true"])
        # It comes back as a new machine: same name and address, nothing of the old one.
        b.revive(2)
        assert b.run(2, ["sh", "-c", "hostname; ls /dev/shm"], check=True).stdout.split() == ["h2"]
        assert len(b.pids(2)) == 1


_COUNT = ("import socket,sys,time\nr=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);r.bind(('0.0.0.0',int(sys.argv[1])))\n"
          "r.setsockopt(socket.SOL_SOCKET,33,1<<23)\n"  # SO_RCVBUFFORCE (root): a slow reader drops nothing
          "r.settimeout(1.0);print('up',flush=True);n=0\ntry:\n while True: r.recv(16); n+=1\nexcept OSError: pass\n"
          "print(n,flush=True)\n")
_BURST = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
          "for i in range(2000):\n s.sendto(b'x',(sys.argv[1],int(sys.argv[2])))\n if i % 50 == 49: time.sleep(0.005)\n")


def _udp_received(bed, src: int, dst: int, port: int) -> int:
    """Datagrams of 2,000 sent from ``src`` that reach ``dst``."""
    counter = bed.spawn(dst, [sys.executable, "-c", _COUNT, str(port)], stdout=subprocess.PIPE, text=True)
    assert counter.stdout.readline().strip() == "up"
    bed.run(src, [sys.executable, "-c", _BURST, bed.address(dst), str(port)], check=True, timeout=60)
    return int(counter.stdout.readline())


@pytest.mark.skipif(bool(hosts.loss_unavailable()), reason=hosts.loss_unavailable() or "")
def test_a_lossy_link_loses_its_share_each_way_and_heals(bed):
    assert _udp_received(bed, 1, 3, 6001) == 2000  # a clean link loses nothing
    bed.degrade(1, 0.25)
    try:
        sent_out, came_in = _udp_received(bed, 1, 3, 6002), _udp_received(bed, 3, 1, 6003)
        # 25% of 2,000 each way: far from both 0 and 2,000 lost (binomial, sd ~19).
        assert 1300 < sent_out < 1700 and 1300 < came_in < 1700, (sent_out, came_in)
        assert _udp_received(bed, 2, 3, 6004) == 2000  # other links are untouched
        assert bed.dropped(1) > 0 and bed.dropped(3) > 0
    finally:
        bed.degrade(1, 0)
    assert _udp_received(bed, 1, 3, 6005) == 2000
    with pytest.raises(ValueError):
        bed.degrade(1, 1.5)


_ECHO = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
         "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen();print('up',flush=True)\n"
         "while True:\n c=s.accept()[0]\n d=c.recv(64)\n while d:\n  c.sendall(d);d=c.recv(64)\n c.close()\n")
_PING = ("import socket,sys,time\nc=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30)\n"
         "c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nfor _ in range(5):\n"
         " t=time.monotonic();c.sendall(b'x');c.recv(8);print(time.monotonic()-t)\n")


def _round_trips(bed, src: int, dst: int, port: int) -> list[float]:
    """Five one-byte TCP round trips from ``src`` to an echo on ``dst``, in seconds."""
    out = bed.run(src, [sys.executable, "-c", _PING, bed.address(dst), str(port)], check=True, timeout=60).stdout
    return [float(x) for x in out.split()]


@pytest.mark.skipif(bool(hosts.delay_unavailable()), reason=hosts.delay_unavailable() or "")
def test_a_slow_link_holds_packets_back_each_way_and_heals(bed):
    for k in (1, 2, 3):
        echo = bed.spawn(k, [sys.executable, "-c", _ECHO, "6101"], stdout=subprocess.PIPE, text=True)
        assert echo.stdout.readline().strip() == "up"
    bed.delay(2, 0.1)
    try:
        assert min(_round_trips(bed, 2, 1, 6101)) >= 0.2  # 0.1 s out and 0.1 s back, every time
        assert min(_round_trips(bed, 1, 2, 6101)) >= 0.2  # whoever opens the connection
        assert min(_round_trips(bed, 1, 3, 6101)) < 0.1  # a link between two other hosts is not slow
        bed.delay(3, 0.05)  # two slow links in a row add up: 0.15 s each way
        assert min(_round_trips(bed, 3, 2, 6101)) >= 0.3
        assert bed.delayed(1) > 0 and bed.delayed(2) > 0
    finally:
        bed.delay(2, 0)
        bed.delay(3, 0)
    assert all(h.holder is None for h in bed.hosts)  # nothing is held any more...
    assert min(_round_trips(bed, 2, 1, 6101)) < 0.1  # ...and the link is fast again
    with pytest.raises(ValueError):
        bed.delay(1, -0.5)
