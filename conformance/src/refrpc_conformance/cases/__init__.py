"""The cases of the suite, one module per spec area; importing this registers them.

The import order is the order of the report: handshake first, failure handling last.
"""

from . import handshake, session, tasks, admission, objects, fetch, relays, introspection, errors, malformed, limits, liveness, detection, borrowing, ownership, submitter, owner, rpc, recovery, actors, security, membership, tracing  # noqa: F401,I001
