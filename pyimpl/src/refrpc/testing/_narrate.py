"""One-line descriptions of messages, for demos, logs and failure reports."""

from __future__ import annotations

from refrpc.core import messages as m


def _short(oid: str) -> str:
    # "driver.3e8.12.r0" -> "driver#12.r0": the incarnation adds nothing for a reader.
    parts = oid.split(".")
    return f"{parts[0]}#{'.'.join(parts[2:])}" if len(parts) >= 3 else oid


def describe(body: m.Message) -> str:
    """A compact, human description of one message body."""
    name = type(body).__name__
    if isinstance(body, m.SubmitTask):
        args = []
        for a in body.args:
            if a.kind == m.ArgKind.VALUE and a.value is not None:
                args.append(repr(a.value.data[:12].decode(errors="replace")) + (f"+{len(a.value.nested)} refs" if a.value.nested else ""))
            elif a.ref is not None:
                args.append(f"{a.kind.value}:{_short(a.ref.object_id)}")
        extra = f" attempt={body.attempt}" if body.attempt > 1 else ""
        actor = f" actor={_short(body.actor_id)}#{body.actor_seq}" if body.actor_id else ""
        return f"SubmitTask {body.function}({', '.join(args)}) -> {', '.join(map(_short, body.return_ids))}{actor}{extra}"
    if isinstance(body, m.TaskReply):
        rets = []
        for rv in body.returns:
            if rv.kind == m.ReturnKind.ERROR and rv.error:
                rets.append(f"{_short(rv.object_id)}=error:{rv.error.code.value}")
            elif rv.kind == m.ReturnKind.STORED:
                rets.append(f"{_short(rv.object_id)}=stored@{rv.location}({rv.size}B)")
            else:
                nested = rv.value.nested if rv.value else ()
                refs = f" [{', '.join(_short(d.object_id) + (' grant ' + d.forward_id.rsplit('.', 1)[-1] if d.forward_id else '') for d in nested)}]" if nested else ""
                rets.append(f"{_short(rv.object_id)}=inline({rv.value.size if rv.value else 0}B){refs}")
        return f"TaskReply {', '.join(rets)}"
    if isinstance(body, m.RegisterBorrower):
        return f"RegisterBorrower {_short(body.object_id)} for {body.borrower} ({body.forward_id.rsplit('.', 1)[-1]})"
    if isinstance(body, m.BorrowerRegistered):
        err = f" REFUSED {body.error.code.value}" if body.error else ""
        return f"BorrowerRegistered {_short(body.object_id)} ({body.forward_id.rsplit('.', 1)[-1]}){err}"
    if isinstance(body, m.ReleaseBorrows):
        return "ReleaseBorrows " + ", ".join(f"{_short(r.object_id)}({len(r.forward_ids)})" for r in body.releases)
    if isinstance(body, m.ObjectStatus):
        return f"ObjectStatus {_short(body.object_id)} {body.state.value}" + (f" at {','.join(body.locations)}" if body.locations else "")
    if isinstance(body, (m.GetObjectStatus, m.AddLocation, m.RemoveLocation)):
        return f"{name} {_short(body.object_id)}"
    if isinstance(body, m.FreeObjects):
        return f"FreeObjects {', '.join(map(_short, body.object_ids))}"
    if isinstance(body, m.PeerDeadNotice):
        return f"PeerDeadNotice {body.peer} ({body.reason})"
    if isinstance(body, m.ConfirmBorrow):
        return f"ConfirmBorrow {_short(body.object_id)} forwarded by dead {body.forwarder}"
    if isinstance(body, m.BorrowConfirmed):
        return f"BorrowConfirmed {_short(body.object_id)} held={body.held}"
    if isinstance(body, m.ProtocolError):
        return f"ProtocolError {body.error.code.value} {body.error.requirement}: {body.error.message}"
    if isinstance(body, (m.CreateActor, m.ActorStatus, m.KillActor)):
        state = f" {body.state.value}" if isinstance(body, m.ActorStatus) else ""
        return f"{name} {_short(body.actor_id)}{state}"
    return name
