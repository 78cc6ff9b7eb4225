"""Channel variables: set, set several, get and unset (``uuid_setvar``/``uuid_getvar`` or the applications)."""

from __future__ import annotations

from typing import Any, Mapping

from esl.channel.verbs import CallControl, _text
from esl.escaping import (
    check_variable_name,
    multiset_app_arg,
    set_app_arg,
    setvar_multi_arg,
    setvar_value,
)

__all__ = ["Variables"]


class Variables(CallControl):
    """The variable verbs; mixed into :class:`esl.channel.Channel`."""

    __slots__ = ()

    async def setvar(self, name: str, value: object) -> Any:
        """Set channel variable ``name`` to exactly ``value`` (quotes, backslashes, edge spaces kept).

        ``uuid_setvar`` (or the ``set`` application where ``api`` is refused),
        with the value escaped as FreeSWITCH parses it (:mod:`esl.escaping`).
        ``ValueError`` for a name FreeSWITCH would not store as given, CR/LF/NUL,
        an empty value (use :meth:`unsetvar`) or a value starting ``ARRAY::``.
        """
        check_variable_name(name)
        text = value if isinstance(value, str) else _text(value)
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("set", set_app_arg(name, text), body=True)
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name} {setvar_value(text)}")
        self._set_local({name: text})
        return result

    async def setvars(self, variables: Mapping[str, object]) -> Any:
        """Set several channel variables at once, each to exactly its value (``uuid_setvar_multi``).

        Same rules as :meth:`setvar`; ``${`` in a value is refused here
        (``uuid_setvar_multi`` drops such values); at most 64 variables.
        """
        if not variables:
            return None
        texts = {name: (value if isinstance(value, str) else _text(value)) for name, value in variables.items()}
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("multiset", multiset_app_arg(texts), body=True)
        else:
            result = await self._api(f"uuid_setvar_multi {self.uuid} {setvar_multi_arg(texts)}")
        self._set_local(texts)
        return result

    async def getvar(self, name: str) -> str | None:
        """The value of channel variable ``name``, or ``None`` when unset.

        ``uuid_getvar``; on an outbound socket without ``full`` control, the
        socket's own ``getvar`` command.
        """
        check_variable_name(name)
        self._check_alive()
        if not self.connection.full_control:
            reply = await self.connection.send(f"getvar {name}")
            text = reply.get("Reply-Text", "")
            return None if text.startswith("-ERR") or text == "_undef_" else text
        text = await self._api(f"uuid_getvar {self.uuid} {name}")
        text = text.rstrip("\n")
        return None if text in ("_undef_", "") else text

    async def unsetvar(self, name: str) -> Any:
        """Unset channel variable ``name``."""
        check_variable_name(name)
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("unset", name)
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name}")
        self._set_local({name: None})
        return result
