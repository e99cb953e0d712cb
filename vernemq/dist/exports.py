# -*- test-case-name: tests.test_dist_node -*-
"""
The registry of Python functions that other nodes may call.

Only what is registered here is callable over the distribution protocol
(C{rpc:call}, C{erpc:call}, C{erl_call}); there is no eval.  A function is
registered under an Erlang module, function name and arity:

    registry.register("vmq", "version", lambda: b"0.1.0")

It is called with the decoded argument terms (see L{vernemq.dist.etf} for
the mapping) and returns a term, or a L{Deferred} / coroutine that gives
one.  To fail the way an Erlang function does, raise L{ErlangError},
L{ErlangExit} or L{ErlangThrow}; any other exception is reported as an
C{error} with reason C{{python, <<"TypeName">>, <<"message">>}} and logged.

L{FunctionRegistry.apply} turns a call into an L{Outcome}: the class of the
result (C{return}, C{throw}, C{exit}, C{error}) and its value, which is what
C{erpc} and C{rex} shape into their replies.  A function that is not
registered gives C{error:undef} with the stack C{[{M, F, Args, []}]}, as
Erlang does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from vernemq.dist.etf import Atom

RETURN = Atom("return")
THROW = Atom("throw")
EXIT = Atom("exit")
ERROR = Atom("error")
UNDEF = Atom("undef")
BADARG = Atom("badarg")

#: The signature of an exported function: terms in, a term (or an awaitable) out.
Exported = Callable[..., Any]


class ErlangException(Exception):
    """
    Raise a subclass to fail an exported function like Erlang code does.

    @ivar klass: C{error}, C{exit} or C{throw}.
    @ivar reason: the reason (or thrown value) as a term.
    """

    klass: Atom = ERROR

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class ErlangError(ErlangException):
    """C{erlang:error(Reason)}."""

    klass = ERROR


class ErlangExit(ErlangException):
    """C{exit(Reason)}."""

    klass = EXIT


class ErlangThrow(ErlangException):
    """C{throw(Value)}."""

    klass = THROW


@dataclass(frozen=True)
class Outcome:
    """
    How a call ended.

    @ivar klass: C{return}, C{throw}, C{exit} or C{error}.
    @ivar value: the result, the thrown value, or the reason.
    @ivar stack: for C{error}, an Erlang-shaped stack trace.
    """

    klass: Atom
    value: Any
    stack: list[Any] = field(default_factory=list)


class FunctionRegistry:
    """
    Exported Python functions by C{(module, function, arity)}.
    """

    log = Logger()

    def __init__(self) -> None:
        self._functions: dict[tuple[str, str, int], Exported] = {}

    def register(
        self, module: str, function: str, implementation: Exported, arity: int | None = None
    ) -> None:
        """
        Export C{implementation} as C{module:function/arity}; the arity is
        taken from its signature when not given.
        """
        if arity is None:
            arity = _arity(implementation)
        self._functions[(str(module), str(function), arity)] = implementation

    def unregister(self, module: str, function: str, arity: int) -> None:
        """Stop exporting C{module:function/arity}."""
        self._functions.pop((str(module), str(function), arity), None)

    def lookup(self, module: str, function: str, arity: int) -> Exported | None:
        """The implementation of C{module:function/arity}, if exported."""
        return self._functions.get((str(module), str(function), arity))

    def exported(self) -> list[tuple[Atom, Atom, int]]:
        """Every exported C{(module, function, arity)}, sorted."""
        return [(Atom(m), Atom(f), a) for m, f, a in sorted(self._functions)]

    async def apply(self, module: Any, function: Any, args: Any) -> Outcome:
        """
        Call C{module:function(args...)}; never raises.
        """
        if not isinstance(module, Atom) or not isinstance(function, Atom):
            return Outcome(ERROR, BADARG, [(module, function, args, [])])
        if not isinstance(args, list):
            return Outcome(ERROR, BADARG, [(module, function, args, [])])
        implementation = self.lookup(module, function, len(args))
        if implementation is None:
            return Outcome(ERROR, UNDEF, [(module, function, args, [])])
        try:
            result = implementation(*args)
            if isinstance(result, Deferred) or inspect.isawaitable(result):
                result = await _awaitable(result)
        except ErlangException as raised:
            stack: list[Any] = [(module, function, len(args), [])] if raised.klass == ERROR else []
            return Outcome(raised.klass, raised.reason, stack)
        except Exception as error:
            self.log.failure(
                "exported function {module}:{function}/{arity} raised",
                module=str(module),
                function=str(function),
                arity=len(args),
            )
            reason = (
                Atom("python"),
                type(error).__name__.encode("utf-8"),
                str(error).encode("utf-8", "replace"),
            )
            return Outcome(ERROR, reason, [(module, function, len(args), [])])
        return Outcome(RETURN, result)


async def _awaitable(result: Deferred[Any] | Awaitable[Any]) -> Any:
    return await result


def _arity(implementation: Exported) -> int:
    parameters = inspect.signature(implementation).parameters.values()
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional)
