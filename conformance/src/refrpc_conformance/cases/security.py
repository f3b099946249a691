"""security.md: who is listened to, and what a message can make a peer run or fear."""

from __future__ import annotations

from typing import Any

from refrpc.core.messages import ErrorCode, PeerDeadNotice, ProtocolError, TaskReply, Welcome

from .._build import by_value
from .._case import case
from .._context import CaseContext
from .._wire import ExpectTimeout, WireError, WirePeer
from ._common import expect_reply, leave_with_goodbye, open_session, run_echo, task


def _need_authentication(ctx: CaseContext) -> None:
    if ctx.cluster_key is None:
        ctx.skip("the IUT's config does not say it authenticates (authentication = \"curve\")")


def _heard_nothing(ctx: CaseContext, peer: WirePeer, requirement: str, who: str) -> None:
    got = peer.received((Welcome, ProtocolError, TaskReply))
    ctx.check(requirement, not got, f"nothing at all answers {who}", [type(a.body).__name__ for a in got])


@case(
    "security/SEC-003-unauthenticated-peers-get-nothing",
    requirements=["SEC-003", "SEC-002", "SEC-016", "SEC-014"],
    summary=(
        "Two outsiders greet the IUT and, without waiting for an answer, send a sequenced echo task and a "
        "PeerDeadNotice naming a member that has not yet spoken: one outsider speaks ZeroMQ's NULL mechanism, "
        "the other CURVE with a key of another cluster. Then the member (the suite's key) greets the IUT, which "
        "must answer Welcome (not DECLARED_DEAD: the notice was not listened to), and runs echo twice, while the "
        "outsiders' Hellos are still being resent. Neither outsider may receive anything: no Welcome, no "
        "ProtocolError, no TaskReply. Needs `authentication = \"curve\"`."
    ),
)
def unauthenticated_peers(ctx: CaseContext) -> None:
    _need_authentication(ctx)
    from refrpc.transport import ClusterKey

    iut = ctx.start_iut()
    member = ctx.wire_peer("member")
    outsiders = [ctx.wire_peer("outsider-null", cluster_key=None),
                 ctx.wire_peer("outsider-other-key", cluster_key=ClusterKey.generate())]
    for outsider in outsiders:
        out_link = outsider.connect(iut.peer_id, iut.address, iut.incarnation)
        out_link.hello()
        out_link.send(task(outsider, "echo", [by_value("from outside")]), seq=1)
        out_link.send(PeerDeadNotice(member.peer_id, member.incarnation, "an outsider says so"), seq=2)
    link = member.connect(iut.peer_id, iut.address, iut.incarnation)
    try:
        link.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
        welcomed = ""
    except (WireError, ExpectTimeout) as exc:
        welcomed = str(exc)
    if welcomed:
        refused = member.received(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD)
        ctx.check("SEC-003" if refused else "SEC-002", False,
                  "a Welcome for the member, which speaks CURVE with the cluster's key", welcomed)
    else:
        run_echo(ctx, member, link, "first")
        run_echo(ctx, member, link, "second")
    for outsider in outsiders:
        _heard_nothing(ctx, outsider, "SEC-003", outsider.peer_id)


@case(
    "security/SEC-011-sender-must-match-its-key",
    requirements=["SEC-011", "SEC-016"],
    summary=(
        "A suite peer that holds the cluster key connects with the member key of PeerId `keyholder` but claims, "
        "in every envelope, to be `liar`: its Hello and a sequenced echo task must go unanswered (the IUT drops "
        "them before anything about `liar` exists). Meanwhile a member with its own key runs echo twice. "
        "Needs `authentication = \"curve\"`."
    ),
)
def sender_matches_key(ctx: CaseContext) -> None:
    _need_authentication(ctx)
    iut = ctx.start_iut()
    liar = ctx.wire_peer("liar", key_name="keyholder")
    liar_link = liar.connect(iut.peer_id, iut.address, iut.incarnation)
    liar_link.hello()
    liar_link.send(task(liar, "echo", [by_value("not me")]), seq=1)
    member = ctx.wire_peer("member")
    link = ctx.session(member, iut)
    run_echo(ctx, member, link, "first")
    run_echo(ctx, member, link, "second")
    _heard_nothing(ctx, liar, "SEC-011", "a peer whose envelope names another PeerId than its key")


@case(
    "security/LIV-019-notice-about-the-receiver-itself",
    requirements=["LIV-019", "LIV-005", "SEC-014"],
    summary=(
        "A member tells the IUT, in a live session, that the IUT itself is dead (PeerDeadNotice naming the IUT's "
        "PeerId and incarnation, then one naming another incarnation of it). The IUT must not stop: it "
        "acknowledges both and then answers an echo task, and sends no ProtocolError(DECLARED_DEAD)."
    ),
)
def notice_about_itself(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.send(PeerDeadNotice(iut.peer_id, iut.incarnation, "the suite says so"))
    last = link.send(PeerDeadNotice(iut.peer_id, iut.incarnation ^ 0x10, "and of another incarnation"))
    ctx.wait_until(peer, lambda: link.acked >= last, requirement="LIV-019",
                   what="the IUT's ack of both notices (it goes on after them)")
    run_echo(ctx, peer, link, "still alive", requirement="LIV-019")
    dead = peer.received(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD)
    ctx.check("LIV-019", not dead, "no DECLARED_DEAD after a notice about the IUT itself", [str(a.body.error) for a in dead])


@case(
    "security/SEC-006-unexposed-functions",
    requirements=["SEC-006", "TASK-006", "VAL-010"],
    summary=(
        "A member (without python-pickle) submits tasks naming functions the IUT does not expose: "
        "`builtins:exec` with a text argument, `os:getcwd`, and `refrpc.runtime._executor:call_by_value` with raw "
        "bytes. Each must be answered ERROR(UNKNOWN_FUNCTION), and an echo task afterwards still runs."
    ),
)
def unexposed_functions(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    calls = [
        task(peer, "builtins:exec", [by_value("import os; os._exit(3)")]),
        task(peer, "os:getcwd"),
        task(peer, "refrpc.runtime._executor:call_by_value", [by_value(b"\x80\x05N.")]),
    ]
    for t in calls:
        link.send(t)
    for t in calls:
        reply = expect_reply(ctx, peer, t, requirement="SEC-006")
        errors = [r.error.code.name if r.error else r.kind.value for r in reply.returns]
        ctx.check("SEC-006", bool(reply.returns) and all(r.error is not None and r.error.code is ErrorCode.UNKNOWN_FUNCTION
                                                          for r in reply.returns),
                  f"{t.function}: ERROR(UNKNOWN_FUNCTION)", errors)
    run_echo(ctx, peer, link, "after", requirement="SEC-006")


# ------------------------------------------------------------------ a cluster with a head (CNF-035)
def _head_cluster(ctx: CaseContext) -> tuple[Any, tuple[bytes, bytes], bytes, Any]:
    """Start the IUT as a member of a cluster whose head the suite plays (CNF-035): a key
    file that names the head's key (SEC-041), and a key pair of the IUT's own handed to
    it in ``REFRPC_IUT_OWN_KEY``. Returns (cluster key, head pair, IUT public key, IUT)."""
    _need_authentication(ctx)
    if not ctx.config.head_member:
        ctx.skip("the IUT's config does not say it can be a member of a cluster with a head (head_member = true)")
    import secrets

    import zmq

    head_pair = zmq.curve_keypair()
    iut_public, iut_secret = zmq.curve_keypair()
    key = ctx.cluster_key.with_head(head_pair[0])
    path = ctx.run_dir / "keys" / f"{ctx.spec.id.replace('/', '__')}.{secrets.token_hex(4)}.head.key"
    key.save(path)
    iut = ctx.start_iut(env={"REFRPC_KEY_FILE": str(path),
                             "REFRPC_IUT_OWN_KEY": f"{iut_public.decode()} {iut_secret.decode()}"})
    return key, head_pair, iut_public, iut


def _no_welcome(ctx: CaseContext, peer: WirePeer, within: float) -> list[str]:
    """What answered ``peer`` within ``within`` seconds (the bound of a non-event)."""
    try:
        peer.expect((Welcome, ProtocolError, TaskReply), timeout=ctx.bound(within), consume=False)
    except ExpectTimeout:
        return []
    return [type(a.body).__name__ for a in peer.received((Welcome, ProtocolError, TaskReply))]


def _handshake_with(address: str, server_key: bytes, within: float) -> str:
    """How a CURVE handshake with the server at ``address`` ends when the client expects
    ``server_key``: "succeeded", "failed", or "" (no end within ``within`` seconds)."""
    import time

    import zmq
    from zmq.utils.monitor import recv_monitor_message

    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key)
    public, secret = zmq.curve_keypair()
    dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
    dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
    monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        dealer.connect(address)
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            if monitor.poll(max(1, int(left * 1000))):
                event = recv_monitor_message(monitor)["event"]
                return "succeeded" if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else "failed"
        return ""
    finally:
        dealer.disable_monitor()
        monitor.close(0)
        dealer.close(0)


@case(
    "security/SEC-041-the-head-is-the-key-file-s",
    requirements=["SEC-041", "SEC-024", "SEC-022", "CNF-035"],
    summary=(
        "The IUT is a member of a cluster whose head the suite plays (its key file names the head's key). A suite "
        "peer that holds the key file claims PeerId `head` with a key pair of its own and a valid join proof for "
        "it, before the IUT has applied any view: its Hello and a sequenced echo task must go unanswered. Then the "
        "head, with the key the file names, completes a session and runs echo. Needs `head_member = true`."
    ),
)
def head_is_the_key_files(ctx: CaseContext) -> None:
    import zmq

    key, head_pair, iut_public, iut = _head_cluster(ctx)
    false_pair = zmq.curve_keypair()
    impostor = ctx.wire_peer("head", cluster_key=key, client_key=false_pair, router_key=false_pair, server_key=iut_public)
    false_link = impostor.connect(iut.peer_id, iut.address, iut.incarnation)
    false_link.hello()
    false_link.send(task(impostor, "echo", [by_value("from a false head")]), seq=1)
    got = _no_welcome(ctx, impostor, 3.0)
    ctx.check("SEC-041", not got, "nothing answers a `head` whose key is not the one the key file names", got)
    head = ctx.wire_peer(restart_of=impostor, cluster_key=key, client_key=head_pair, router_key=head_pair,
                         server_key=iut_public)
    link = ctx.session(head, iut)
    run_echo(ctx, head, link, "from the head", requirement="SEC-041")


@case(
    "security/SEC-040-HS-027-a-member-serves-with-its-own-key",
    requirements=["SEC-040", "HS-027", "CNF-035"],
    summary=(
        "The IUT is a member of a cluster whose head the suite plays. A client that expects the server key "
        "SEC-016 derives from the key file must complete no CURVE handshake with the IUT (it serves with its own "
        "key). The head, with its own key as client, greets the IUT from an address whose server holds the "
        "derived key: the IUT's connection there must not complete, so no Welcome arrives. Then the head greets "
        "it as a new incarnation from an address whose server holds the head's key, completes a session and runs "
        "echo. Needs `head_member = true`."
    ),
)
def member_serves_with_its_own_key(ctx: CaseContext) -> None:
    key, head_pair, iut_public, iut = _head_cluster(ctx)
    derived = _handshake_with(iut.address, key.server_public, ctx.bound(5.0))
    ctx.check("SEC-040", derived == "failed", "a handshake expecting the derived server key fails",
              derived or "no end within 5 s")
    own = _handshake_with(iut.address, iut_public, ctx.bound(5.0))
    ctx.check("SEC-040", own == "succeeded", "a handshake expecting the IUT's own key succeeds", own or "no end within 5 s")
    posing = ctx.wire_peer("head", cluster_key=key, client_key=head_pair,
                           router_key=(key.server_public, key.server_secret), server_key=iut_public)
    posing.connect(iut.peer_id, iut.address, iut.incarnation).hello()
    got = _no_welcome(ctx, posing, 3.0)
    ctx.check("HS-027", not got, "no Welcome reaches a server that does not hold the head's key", got)
    ctx.check("SEC-040", not got, "the IUT connects to `head` only where the server holds the head's key", got)
    head = ctx.wire_peer(restart_of=posing, cluster_key=key, client_key=head_pair, router_key=head_pair,
                         server_key=iut_public)
    link = ctx.session(head, iut)
    run_echo(ctx, head, link, "from the head", requirement="SEC-040")


@case(
    "security/SEC-024-member-hears-only-bound-peers",
    requirements=["SEC-024", "SEC-022", "CNF-035"],
    summary=(
        "The IUT is a member of a cluster whose head the suite plays; it has applied no view, so only `head` is "
        "bound (by its key file). Two suite peers that hold the key file greet it and send a sequenced echo: "
        "one with a key pair of its own and a valid join proof (what a joiner presents to the head, which a "
        "member does not admit), the other with the member key SEC-016 derives for its PeerId. Neither may "
        "receive anything (no Welcome, no ProtocolError, no TaskReply). The head then completes a session and "
        "runs echo. Needs `head_member = true`."
    ),
)
def member_hears_only_bound_peers(ctx: CaseContext) -> None:
    import zmq

    key, head_pair, iut_public, iut = _head_cluster(ctx)
    own = zmq.curve_keypair()
    joiner = ctx.wire_peer("joiner", cluster_key=key, client_key=own, router_key=own, server_key=iut_public)
    derived = ctx.wire_peer("derived", cluster_key=key, server_key=iut_public)
    for peer in (joiner, derived):
        link = peer.connect(iut.peer_id, iut.address, iut.incarnation)
        link.hello()
        link.send(task(peer, "echo", [by_value(f"from {peer.peer_id}, bound by no view")]), seq=1)
    head = ctx.wire_peer("head", cluster_key=key, client_key=head_pair, router_key=head_pair, server_key=iut_public)
    link = ctx.session(head, iut)
    run_echo(ctx, head, link, "from the head", requirement="SEC-024")
    for peer, what in ((joiner, "a peer with its own key and a valid join proof"),
                       (derived, "a peer with the member key derived for its PeerId")):
        got = _no_welcome(ctx, peer, 2.0)
        ctx.check("SEC-024", not got, f"nothing answers {what}, which no view binds", got)


# ------------------------------------------------------------------ the IUT as the head (CNF-047)
def _head_iut(ctx: CaseContext) -> tuple[Any, bytes, Any]:
    """Start the IUT as the head of a cluster whose joiners the suite plays (CNF-047): a
    key file that names the head's key (SEC-041), and that key pair handed to the IUT in
    ``REFRPC_IUT_HEAD_KEY``. Returns (cluster key, the head's public key, IUT)."""
    key, head_pair, iut = start_head(ctx)
    return key, head_pair[0], iut


def start_head(ctx: CaseContext, *, membership: bool = False,
               env: dict[str, str] | None = None) -> tuple[Any, tuple[bytes, bytes], Any]:
    """:func:`_head_iut`, returning the head's whole key pair (the operator holds it,
    SEC-042); with ``membership``, the IUT also runs the head's membership calls for the
    suite's joiners (CNF-051, ``REFRPC_IUT_MEMBERSHIP=pickle``)."""
    _need_authentication(ctx)
    if not ctx.config.head:
        ctx.skip("the IUT's config does not say it can be the head of a cluster (head = true)")
    if membership and not ctx.config.head_membership:
        ctx.skip("the IUT's config does not say its head runs the membership calls for the suite (head_membership = true)")
    import secrets

    import zmq

    head_public, head_secret = zmq.curve_keypair()
    key = ctx.cluster_key.with_head(head_public)
    path = ctx.run_dir / "keys" / f"{ctx.spec.id.replace('/', '__')}.{secrets.token_hex(4)}.key"
    key.save(path)
    extra = env
    env = {"REFRPC_KEY_FILE": str(path), "REFRPC_IUT_HEAD_KEY": f"{head_public.decode()} {head_secret.decode()}"}
    if membership:
        env["REFRPC_IUT_MEMBERSHIP"] = "pickle"
    iut = ctx.start_iut(env={**env, **(extra or {})})
    return key, (head_public, head_secret), iut


#: What a joiner of a head IUT that runs the membership calls offers (CNF-051, CLU-030).
MEMBER_FEATURES = ("core", "borrowing", "recovery", "actors", "python-pickle")
#: The module of the membership functions (CLU-030: named with a colon).
MEMBERSHIP = "refrpc.runtime._membership"


def joiner(ctx: CaseContext, iut: Any, key: Any, head_public: bytes, name: str, *,
           pair: tuple[bytes, bytes] | None = None) -> WirePeer:
    """A suite peer that joins the head IUT: a key pair of its own (or ``pair``), a join
    proof under ``key``'s credential (SEC-022), and ``python-pickle`` offered (CNF-051)."""
    import zmq

    own = pair or zmq.curve_keypair()
    return ctx.wire_peer(name, cluster_key=key, client_key=own, router_key=own, server_key=head_public,
                         features=MEMBER_FEATURES)


def welcomed(ctx: CaseContext, peer: WirePeer, iut: Any, requirement: str, what: str) -> Any:
    """Greet the IUT from ``peer`` and complete the handshake; a refusal, or no answer,
    fails ``requirement``. Returns the link."""
    link = peer.connect(iut.peer_id, iut.address, iut.incarnation)
    try:
        link.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail(requirement, f"a Welcome for {what}", str(exc))
    return link


def greeted_in_vain(ctx: CaseContext, peer: WirePeer, iut: Any, requirement: str, what: str, within: float = 3.0) -> None:
    """Greet the IUT from ``peer`` and send an echo task: nothing may answer (SEC-023)."""
    link = peer.connect(iut.peer_id, iut.address, iut.incarnation)
    link.hello()
    link.send(task(peer, "echo", [by_value(f"from {peer.peer_id}")]), seq=1)
    got = _no_welcome(ctx, peer, within)
    ctx.check(requirement, not got, f"nothing answers {what}", got)


def membership_call(ctx: CaseContext, peer: WirePeer, link: Any, function: str, args: tuple[Any, ...], *,
                    requirement: str) -> tuple[bool, Any]:
    """Call ``function`` of the membership module on the IUT with pickled ``args``
    (CLU-030). Returns (True, the result) or (False, the ErrorInfo)."""
    from refrpc.core.messages import Arg, ArgKind, ReturnKind

    from .._build import describe_return, pickled, read_pickled

    t = task(peer, f"{MEMBERSHIP}:{function}", [Arg(kind=ArgKind.VALUE, value=pickled(a)) for a in args])
    link.send(t)
    reply = expect_reply(ctx, peer, t, requirement=requirement)
    if len(reply.returns) != 1:
        ctx.fail("TASK-010", "one ReturnValue", f"{len(reply.returns)} returns")
    ret = reply.returns[0]
    if ret.error is not None:
        return False, ret.error
    if ret.kind is not ReturnKind.INLINE or ret.value is None:
        ctx.fail(requirement, f"{function}'s result inline", describe_return(ret))
    try:
        return True, read_pickled(ret.value)
    except ValueError as exc:
        ctx.fail("CLU-030", f"{function}'s result pickled, of CLU-030's built-in types", str(exc))


@case(
    "security/SEC-023-head-binds-the-first-joiner",
    requirements=["SEC-023", "SEC-022", "CNF-047"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays. Joiner W (a key pair of its own, a valid "
        "join proof) is welcomed and runs echo: the head bound W's PeerId to its key. A new incarnation of W with "
        "another key pair and a valid join proof for it greets the head while W is live: it gets nothing, and W "
        "still runs echo (it was not replaced). A stranger whose join proof is made under another cluster's "
        "credential gets nothing either. W then leaves (Goodbye): the head declares it dead and removes the "
        "binding, so the new incarnation's next Hello is welcomed and its echo runs. Needs `head = true`."
    ),
)
def head_binds_the_first_joiner(ctx: CaseContext) -> None:
    import zmq
    from refrpc.transport import ClusterKey

    key, head_public, iut = _head_iut(ctx)
    first = zmq.curve_keypair()
    w = ctx.wire_peer("worker", cluster_key=key, client_key=first, router_key=first, server_key=head_public)
    link = ctx.session(w, iut)
    run_echo(ctx, w, link, "the first joiner", requirement="SEC-023")
    second = zmq.curve_keypair()
    w2 = ctx.wire_peer(restart_of=w, cluster_key=key, client_key=second, router_key=second, server_key=head_public)
    link2 = w2.connect(iut.peer_id, iut.address, iut.incarnation)
    link2.resend_hello = False
    link2.hello()
    other = ClusterKey.generate()
    stranger_pair = zmq.curve_keypair()
    stranger = ctx.wire_peer("stranger", cluster_key=other, client_key=stranger_pair, router_key=stranger_pair,
                             server_key=head_public)
    stranger_link = stranger.connect(iut.peer_id, iut.address, iut.incarnation)
    stranger_link.hello()
    stranger_link.send(task(stranger, "echo", [by_value("under another credential")]), seq=1)
    got = _no_welcome(ctx, w2, 3.0)
    ctx.check("SEC-023", not got, "nothing answers another key claiming a live joiner's PeerId, join proof and all", got)
    run_echo(ctx, w, link, "still the first joiner", requirement="SEC-023")
    got = _no_welcome(ctx, stranger, 1.0)
    ctx.check("SEC-023", not got, "nothing answers a join proof made under a credential the head does not accept", got)
    leave_with_goodbye(ctx, w, iut)
    link2.reset_session()
    link2.resend_hello = True
    try:
        link2.handshake(ctx.bound(10.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("SEC-023", "a Welcome for the new key once the head declared the old incarnation dead (its binding "
                 "removed)", str(exc))
    run_echo(ctx, w2, link2, "the new incarnation", requirement="SEC-023")


@case(
    "security/SEC-023-CNF-054-bindings-of-unregistered-joiners-bounded",
    requirements=["SEC-023", "SEC-021", "CNF-054", "CNF-047"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, with maxSessions 2 (REFRPC_IUT_MAX_SESSIONS, "
        "CNF-054). Joiners A and B, neither registered, join and run echo: two bindings. Joiner C, with a valid join "
        "proof, would make a third binding of a peer that has not registered: its Hello and task must be discarded, "
        "unanswered (not even refused, as SEC-021 would refuse a Hello of a bound peer). A then leaves (Goodbye): "
        "its binding goes, and a new incarnation of C with another key pair and a valid proof is welcomed and runs "
        "echo (C's first key was never bound). Needs `head = true`."
    ),
    timeout=60.0,
)
def bindings_of_unregistered_joiners_bounded(ctx: CaseContext) -> None:
    import zmq

    key, head_pair, iut = start_head(ctx, env={"REFRPC_IUT_MAX_SESSIONS": "2"})
    head_public = head_pair[0]
    a = joiner(ctx, iut, key, head_public, "joiner-a")
    link_a = ctx.session(a, iut)
    run_echo(ctx, a, link_a, "joiner A", requirement="SEC-023")
    b = joiner(ctx, iut, key, head_public, "joiner-b")
    run_echo(ctx, b, ctx.session(b, iut), "joiner B", requirement="SEC-023")
    c = joiner(ctx, iut, key, head_public, "joiner-c")
    link_c = c.connect(iut.peer_id, iut.address, iut.incarnation)
    link_c.resend_hello = False
    link_c.hello()
    link_c.send(task(c, "echo", [by_value("a third binding")]), seq=1)
    got = _no_welcome(ctx, c, 3.0)
    ctx.check("SEC-023", not got, "nothing answers a joiner whose binding would be the third of unregistered peers "
              "(maxSessions 2)", got)
    leave_with_goodbye(ctx, a, iut)
    c2 = ctx.wire_peer(restart_of=c, cluster_key=key, client_key=(pair := zmq.curve_keypair()), router_key=pair,
                       server_key=head_public, features=MEMBER_FEATURES)
    link_c2 = c2.connect(iut.peer_id, iut.address, iut.incarnation)
    try:
        link_c2.handshake(ctx.bound(10.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("SEC-023", "a Welcome for C's new key once A left (C's first key never bound)", str(exc))
    run_echo(ctx, c2, link_c2, "joiner C, new key", requirement="SEC-023")


def _rotate(ctx: CaseContext, peer: WirePeer, link: Any, join: str | None, grace_s: float, requirement: str) -> tuple[bool, Any]:
    return membership_call(ctx, peer, link, "rotate", (join, grace_s), requirement=requirement)


def _describe(ok: bool, result: Any) -> str:
    return f"returned {result!r:.80}" if ok else f"error {result.code.name} ({result.message!r:.120})"


@case(
    "security/SEC-042-only-the-operator-rotates",
    requirements=["SEC-042", "CLU-052", "CLU-031", "CNF-051"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, and runs the membership calls (pickled). "
        "A joiner M (a key pair of its own) registers as a worker, then calls `rotate` with a new join credential "
        "and no grace: the head must fail it with TASK_FAILED, and the credential stays: a joiner whose proof is "
        "made under the new one gets nothing. The operator (PeerId `operator`, connecting with the head's own key "
        "pair, so bound to the head's public key) makes the same call: it returns True, and a joiner with the new "
        "credential is welcomed and runs echo. Needs `head_membership = true`."
    ),
)
def only_the_operator_rotates(ctx: CaseContext) -> None:
    key, head_pair, iut = start_head(ctx, membership=True)
    head_public = head_pair[0]
    member = joiner(ctx, iut, key, head_public, "member")
    link = welcomed(ctx, member, iut, "SEC-023", "a joiner with a valid join proof")
    ok, view = membership_call(ctx, member, link, "register",
                               (member.peer_id, member.address, 1, "suite-host", 0, {}, member.incarnation),
                               requirement="CLU-005")
    ctx.check("CLU-005", ok, "register of a joined worker returns the view", _describe(ok, view))
    new_key = key.with_new_join()
    ok, result = _rotate(ctx, member, link, new_key.join_hex(), 0.0, "SEC-042")
    ctx.check("SEC-042", not ok and result.code is ErrorCode.TASK_FAILED,
              "rotate from a registered member that is not the operator: ERROR(TASK_FAILED)", _describe(ok, result))
    greeted_in_vain(ctx, joiner(ctx, iut, new_key, head_public, "too-early"), iut, "SEC-042",
                    "a joiner under the credential a member tried to put in place")
    operator = ctx.wire_peer("operator", cluster_key=key, client_key=head_pair, router_key=head_pair,
                             server_key=head_public, features=MEMBER_FEATURES)
    op_link = welcomed(ctx, operator, iut, "SEC-042", "the operator, who connects with the head's own key pair")
    ok, result = _rotate(ctx, operator, op_link, new_key.join_hex(), 0.0, "SEC-042")
    ctx.check("SEC-042", ok and result is True, "rotate from the operator returns True", _describe(ok, result))
    newcomer = joiner(ctx, iut, new_key, head_public, "newcomer")
    new_link = welcomed(ctx, newcomer, iut, "SEC-025", "a joiner under the credential the operator put in place")
    run_echo(ctx, newcomer, new_link, "under the new credential", requirement="SEC-025")


@case(
    "security/SEC-025-CLU-052-join-credential-replaced-with-a-grace",
    requirements=["SEC-025", "CLU-052", "SEC-023", "CNF-051"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, and runs the membership calls (pickled). "
        "Worker W joins under the key file's credential. The operator (the head's own key pair) calls "
        "`rotate(NEW, 600.0)`: during the grace a joiner under the old credential and one under the new are "
        "both welcomed. The operator then calls `rotate(None, 0.0)`, which ends every grace at once: a joiner "
        "under the old credential now gets nothing (no Welcome, no answer to its echo), one under the new is "
        "welcomed and runs echo, and W, which joined before, still runs echo. Needs `head_membership = true`."
    ),
)
def join_credential_replaced(ctx: CaseContext) -> None:
    key, head_pair, iut = start_head(ctx, membership=True)
    head_public = head_pair[0]
    w = joiner(ctx, iut, key, head_public, "worker")
    w_link = welcomed(ctx, w, iut, "SEC-023", "a joiner with a valid join proof")
    run_echo(ctx, w, w_link, "joined first", requirement="SEC-023")
    operator = ctx.wire_peer("operator", cluster_key=key, client_key=head_pair, router_key=head_pair,
                             server_key=head_public, features=MEMBER_FEATURES)
    op_link = welcomed(ctx, operator, iut, "SEC-042", "the operator, who connects with the head's own key pair")
    new_key = key.with_new_join()
    ok, result = _rotate(ctx, operator, op_link, new_key.join_hex(), 600.0, "CLU-052")
    ctx.check("CLU-052", ok and result is True, "rotate(NEW, 600.0) from the operator returns True", _describe(ok, result))
    for name, under, what in (("old-in-grace", key, "the replaced credential, within its grace"),
                              ("new-in-grace", new_key, "the new credential")):
        peer = joiner(ctx, iut, under, head_public, name)
        run_echo(ctx, peer, welcomed(ctx, peer, iut, "SEC-025", f"a joiner under {what}"), name, requirement="SEC-025")
    ok, result = _rotate(ctx, operator, op_link, None, 0.0, "CLU-052")
    ctx.check("CLU-052", ok and result is True, "rotate(None, 0.0) from the operator returns True", _describe(ok, result))
    greeted_in_vain(ctx, joiner(ctx, iut, key, head_public, "old-after-grace"), iut, "SEC-025",
                    "a joiner under the replaced credential once its grace has ended")
    late = joiner(ctx, iut, new_key, head_public, "new-after-grace")
    run_echo(ctx, late, welcomed(ctx, late, iut, "SEC-025", "a joiner under the new credential"), "late",
             requirement="SEC-025")
    run_echo(ctx, w, w_link, "joined before the rotation", requirement="SEC-025")
