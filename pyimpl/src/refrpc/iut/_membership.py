"""The membership calls a head IUT serves to the suite's joiners (CNF-051), and the
views a member IUT of a cluster without authentication takes from its head (CNF-052).

With ``REFRPC_IUT_MEMBERSHIP=pickle`` in its environment, an IUT that runs as the
head (``REFRPC_IUT_HEAD_KEY``, CNF-047) offers ``python-pickle`` and runs the head's
membership functions (membership.md, CLU-030, CLU-031) under exactly their names,
beside the fixture catalog, as the reference head runs them: ``register``,
``register_driver``, ``members``, ``drivers`` and ``rotate``. Nothing else becomes
callable (SEC-006: no name is imported), and a pickled value is read only as
CLU-030 says membership values are made: Python's built-in ``str``, ``int`` (of at
most 64 bits), ``float``, ``bool``, ``None``, ``tuple``, ``list`` and ``dict``. A
pickle that names any class or function, refers to a ref or an out-of-band buffer,
or holds another type is refused before anything in it is acted on (the call fails
with ``TASK_FAILED``), so a joiner cannot make the IUT run code of its choosing.
Results are pickled with protocol 5, as the reference head pickles them.

With ``REFRPC_IUT_JOINED_HEAD=tcp://HOST:PORT`` instead, and no key file, the IUT plays
a member of a cluster without authentication that joined through the head at that
address: it offers ``python-pickle`` (SEC-031 makes every peer a member) and runs
``learn`` alone, read the same way, as such a member runs it (CLU-011, CLU-013,
SEC-026: a view only from the session whose Hello announced that address).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Callable

from ..core.messages import Encoding, Value

#: The environment variable, and its value, that turn membership on (CNF-051).
MEMBERSHIP_ENV = "REFRPC_IUT_MEMBERSHIP"
MEMBERSHIP_PICKLE = "pickle"

#: The environment variable that makes the IUT a member that joined through the head
#: at the address it gives, in a cluster without authentication (CNF-052).
JOINED_HEAD_ENV = "REFRPC_IUT_JOINED_HEAD"

#: The pickle protocol of membership values (CLU-030, VAL-009).
PROTOCOL = 5

#: The types a membership value may hold (CLU-030).
_BUILTINS = (str, int, float, bool, type(None), tuple, list, dict)
#: Integers a membership value may hold: incarnations reach 2^64 - 1 (ID-002).
_INT_LIMIT = 1 << 64
#: Nesting deeper than this is no membership value (a view is four levels deep).
_MAX_DEPTH = 32


class NotAMembershipValue(ValueError):
    """A pickled argument that is not made of CLU-030's built-in types only."""


class _BuiltinsOnly(pickle.Unpickler):
    """An unpickler that can build only what pickle's own opcodes build: it finds
    no class or function (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``OBJ``, ``EXT*``
    all go through :meth:`find_class`) and resolves no persistent id."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle's hook
        raise NotAMembershipValue(f"the pickle names {module}.{name}: membership values hold built-in types only (CLU-030)")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle's hook
        raise NotAMembershipValue("the pickle refers to a ref: membership values hold none (CLU-030)")


def _check_tree(obj: Any) -> None:
    """Raise unless ``obj`` holds only CLU-030's types (iteratively; shared and
    self-referring containers are looked at once)."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        if type(item) not in _BUILTINS:
            raise NotAMembershipValue(f"a membership value holds no {type(item).__name__} (CLU-030)")
        if type(item) is int and not -_INT_LIMIT < item < _INT_LIMIT:
            raise NotAMembershipValue("a membership value holds no integer beyond 64 bits (CLU-030)")
        if isinstance(item, (tuple, list, dict)):
            if depth >= _MAX_DEPTH:
                raise NotAMembershipValue(f"a membership value is not nested deeper than {_MAX_DEPTH} levels")
            if id(item) in seen:
                continue
            seen.add(id(item))
            children = [x for kv in item.items() for x in kv] if isinstance(item, dict) else list(item)
            todo.extend((child, depth + 1) for child in children)


def load_pickled(value: Value) -> Any:
    """A pickled membership argument, read with :class:`_BuiltinsOnly` and checked.

    Raises:
        NotAMembershipValue: The value holds refs, out-of-band buffers or anything
            but CLU-030's types, or is no pickle at all.
    """
    if value.nested or value.buffers:
        raise NotAMembershipValue("a membership value has no nested refs and no out-of-band buffers (CLU-030)")
    try:
        obj = _BuiltinsOnly(io.BytesIO(bytes(value.data)), buffers=()).load()
    except NotAMembershipValue:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, a bad opcode, NEXT_BUFFER without a buffer...
        raise NotAMembershipValue(f"not a readable pickle: {type(exc).__name__}: {exc}"[:300]) from None
    _check_tree(obj)
    return obj


def pickled(obj: Any) -> Value:
    """A membership result, pickled as the reference head pickles it (CLU-030)."""
    _check_tree(obj)
    return Value(Encoding.PICKLE, pickle.dumps(obj, protocol=PROTOCOL))


def functions(role: str = "head") -> dict[str, Callable[..., Any]]:
    """The membership functions a ``role`` ("head" or "member") runs, by their exact
    names (CLU-030, CLU-031): the head's registry calls, or a member's ``learn``."""
    from ..runtime import _membership as m

    chosen = (m.register, m.register_driver, m.members, m.drivers, m.rotate) if role == "head" else (m.learn,)
    return {f"refrpc.runtime._membership:{f.__name__}": f for f in chosen}
