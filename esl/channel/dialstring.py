"""Building a dial string for ``bridge``/``originate`` from its parts (switchio's ``bridge()`` arguments).

FreeSWITCH dial strings (``switch_ivr_originate``): ``[vars]endpoint/args``,
legs joined with ``,`` (rung together) or ``|`` (tried in turn). The SIP
endpoint is ``sofia/<profile>/<user@host>`` or ``sofia/gateway/<gateway>/<user>``;
``;fs_path=<uri>`` after the destination sends the INVITE through a proxy
(mod_sofia adds a Route header). Per-leg variables go in front of the leg, in
the ``[...]`` block built by :func:`esl.escaping.dial_string_leg_vars`.
"""

from __future__ import annotations

from typing import Mapping

from esl.commands import check_line
from esl.escaping import dial_string_leg_vars

__all__ = ["sip_dial_string"]

# Characters that end or split a leg of a dial string, or start a variable block.
_BREAKS = frozenset(" \t,|'\"\\{}[]^")


def _part(text: str, what: str) -> str:
    check_line(text, what)
    if not text or any(c in _BREAKS for c in text):
        raise ValueError(f"invalid {what} {text!r}: no spaces, quotes, backslashes or , | {{ }} [ ] ^")
    return text


def sip_dial_string(
    destination: str,
    *,
    profile: str | None = None,
    gateway: str | None = None,
    proxy: str | None = None,
    params: Mapping[str, object] | None = None,
    endpoint: str = "sofia",
    api: bool = True,
) -> str:
    """One SIP leg: ``[vars]sofia/<profile>/<destination>[;fs_path=sip:<proxy>]``.

    ``destination``: ``user@host`` (or a full ``sip:`` URI) with a ``profile``;
    the user part with a ``gateway`` (``sofia/gateway/<gateway>/<destination>``).
    Exactly one of ``profile`` and ``gateway``. ``proxy``: ``host[:port]`` or a
    ``sip:`` URI the INVITE is routed through. ``params``: channel variables
    for this leg only (escaped so each value arrives literally; see
    :func:`esl.escaping.dial_string_leg_vars`). ``ValueError`` for parts holding
    spaces, quotes or dial-string separators. ``api=False``: for the ``bridge``
    application's argument (no api space split; see ``dial_string_leg_vars``).
    """
    if (profile is None) == (gateway is None):
        raise ValueError("give exactly one of profile= and gateway=")
    dest = _part(destination, "destination")
    kind = _part(endpoint, "endpoint")
    if gateway is not None:
        leg = f"{kind}/gateway/{_part(gateway, 'gateway')}/{dest}"
    else:
        leg = f"{kind}/{_part(profile or '', 'profile')}/{dest}"
    if proxy is not None:
        route = _part(proxy, "proxy")
        if not route.lower().startswith(("sip:", "sips:")):
            route = "sip:" + route
        leg += f";fs_path={route}"
    return (dial_string_leg_vars(params, api=api) if params else "") + leg
