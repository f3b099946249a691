"""pyimpl as an implementation under test (IUT) of the conformance suite.

``python -m refrpc.iut --endpoint tcp://127.0.0.1:PORT --peer-id NAME`` runs one
RefRPC peer that the conformance suite (``conformance/``) tests the way it tests
an implementation in any other language: through the protocol on its ZeroMQ
socket and through the control channel on its standard input and output
(``spec/conformance-hooks.md``). It is the runtime's node (the sans-IO core,
ZeroMQ transport, fetch service) with a fixed catalog of functions instead of
importable Python code.

**pyimpl as an implementation under test**

**Starting.** The suite's config for pyimpl is ``conformance/iut/pyimpl.toml``;
its command starts with ``"python"``, which the suite replaces with its own
interpreter (``sys.executable``), so pyimpl must be importable there (installed,
or on ``PYTHONPATH``). The process binds its ROUTER socket to ``--endpoint``
(``REFRPC_IUT_ENDPOINT``) and takes the PeerId ``--peer-id``
(``REFRPC_IUT_PEER_ID``) (CNF-011). It uses the spec's timing defaults unless
``REFRPC_IUT_HEARTBEAT_MS`` or ``REFRPC_IUT_MISS_LIMIT`` say otherwise (CNF-012).
Given a cluster key file (``--key-file``, or ``REFRPC_KEY_FILE``, which the suite
sets when the config says ``authentication = "curve"``), it authenticates every
connection with CURVE and listens only to members whose key matches their PeerId
(SEC-011, SEC-016). ``--max-status-waits N`` bounds the ``GetObjectStatus`` waits
one remote may have outstanding (SEC-009; the spec's 100,000 by default): the suite's
config starts it with 8 and says so in ``limits`` (CNF-031), so that the SEC-009
case can reach the bound. Once its socket is bound it writes the ``ready`` event (CNF-006); it starts in
about half a second on an idle machine. Logs go to standard error only.

**What it offers.** Features ``core``, ``borrowing``, ``recovery``, ``actors``
and ``lz4``, not ``python-pickle``: it reads ``portable`` and ``raw`` values and
answers in ``portable`` only, as a peer written in another language would. The
one exception is membership, whose values are pickled (CLU-030): as the head
(``REFRPC_IUT_HEAD_KEY``) with ``REFRPC_IUT_MEMBERSHIP=pickle`` (CNF-051), or as a
member of a cluster without authentication with ``REFRPC_IUT_JOINED_HEAD=ADDRESS``
(CNF-052), it offers ``python-pickle`` and runs the reference head's membership
functions, or a member's ``learn``, under their exact names, for submitters on a
session with ``python-pickle`` only; it reads their pickled arguments as Python's
built-in types only and never by a name a pickle gives (``refrpc.iut._membership``). The
fixture functions ``echo``, ``make_bytes``, ``sum_bytes``, ``hold``, ``forward``,
``nest``, ``fail`` and ``sleep`` and the actor class ``Counter`` (methods ``add``,
``get``, ``keep``) are registered under exactly those names, and nothing else can
be executed (CNF-001, VAL-010); an argument of the wrong type makes the task fail
with ``TASK_FAILED`` (CNF-003). Results above the inline threshold (100 KiB) are
stored at the executor and fetched over the wire: the store is the process's own
memory, never shared memory, so two IUTs on one host still fetch from each other
and a ``crash`` leaves nothing behind.

**The control channel.** Every operation of CNF-008 is implemented. Requests are
carried out in the order they arrive, each answered before the next is read,
except ``get``, which waits on a thread of its own and may be answered after
later requests (CNF-005). An operation that changes state (``put``, ``submit``,
``drop``, ``drop_held``, ``gc``...) answers only once the node's loop has handled
what it caused, so a following ``table`` sees it (CNF-009). Error codes in
``get`` answers are the spec's names in capitals (``TASK_FAILED``), or
``timeout``; a failed request is answered ``unknown_op``, ``bad_request`` (a
missing or ill-typed argument, a ref the IUT does not hold, a peer it was never
told about), the core's error code when the core refuses (``OBJECT_FREED``...),
or ``internal`` (a bug, logged with its traceback). Details:

* ``add_peer`` with ``slots`` > 0 makes the peer a worker the core may place
  tasks on (retries, actor restarts); with 0 it only remembers the address, used
  when a ``submit`` or ``actor_create`` names the peer. A peer that greeted the
  IUT first needs no ``add_peer``.
* ``submit`` sends the task to exactly ``executor``; ``{"value": v}`` arguments
  travel by value whatever their size; the IUT cannot be its own executor.
* ``quiesce`` is true when no task runs or waits here, every sequenced message
  sent is acknowledged, no handshake, task, registration, status request,
  introspection, get, actor creation or fetch of its own is outstanding, and no
  release or free waits to be sent.
* ``table`` is ``Peer.table()``: owned entries first, then borrowed ones.
* ``crash`` sends itself SIGKILL. ``shutdown`` answers ``null``, sends
  ``Goodbye`` on every live session (LIV-006), gives it up to 0.5 s to leave (as every node does,
  LIV-010), and exits with status 0; so does the end of standard input, SIGTERM
  or SIGINT.
* Events besides ``ready``: ``{"event": "peer_dead", "peer_id", "incarnation",
  "reason"}`` when it declares a peer incarnation dead, and ``{"event":
  "fail_stop", "reason"}`` when it learns it was declared dead itself (LIV-005),
  after which it exits with status 0; ``{"event": "internal_error", "message"}``
  if its protocol loop died of an exception (a bug; the traceback is on standard
  error), after which it exits with status 70.
* Extra operations (CNF-010): ``x-faults`` lists the fault switches in force;
  ``x-peers`` lists its sessions (peer, incarnation, state, address, features,
  the heartbeat interval the peer announced).

**Fault switches.** ``--fault NAME`` (repeatable) or
``REFRPC_IUT_FAULTS=name1,name2`` makes the process break exactly one
requirement per switch, to prove that the suite catches it. :data:`FAULTS` maps
each name to the requirement id it breaks and what the IUT then does; the
switches wrap methods of this process's core, node or executor at startup and
leave ``refrpc.core`` and ``refrpc.runtime`` untouched. An unknown name is a
usage error (exit status 2).
"""

from ._faults import FAULTS
from ._main import FEATURES, Iut, main

__all__ = ["FAULTS", "FEATURES", "Iut", "main"]
