"""RefRPC: pass-by-reference RPC with distributed memory.

v0.1 ships the protocol core (:mod:`refrpc.core`), the wire codec
(:mod:`refrpc.codec`) and a deterministic cluster simulator
(:mod:`refrpc.testing`). The user-facing API (``remote``, ``get``, ``put``...)
arrives with the runtime.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
