"""Which content coding a client accepts: ``Accept-Encoding`` with q-values
(RFC 9110, section 12.5.3). Pure, no I/O, no Twisted.

Used by compressing routes (which coding to encode a response in) and by static
routes (which precompressed sibling of a file to send). The server's order of
preference breaks ties between codings the client weights equally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: The most coding entries read from a request's Accept-Encoding fields; the rest
#: are ignored (browsers send four or five).
MAX_CODINGS = 32

#: Names clients use for a coding, mapped to the coding's registered name.
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}

#: RFC 9110 qvalue: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ].
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def parse_q(text: str) -> float | None:
    """The weight in a ``q=`` parameter, or C{None} when it is not a qvalue
    (``0`` to ``1`` with at most three decimals)."""
    text = text.strip()
    return float(text) if _QVALUE.fullmatch(text) else None


def accepted_codings(values: Iterable[bytes]) -> dict[str, float]:
    """The codings named in a request's Accept-Encoding field values and their
    weights (1 when no ``q`` is given). An entry with a malformed weight is ignored,
    as is an empty one; names are lowercased and aliases resolved; when a coding is
    named twice the first entry counts."""
    weights: dict[str, float] = {}
    seen = 0
    for value in values:
        for entry in value.decode("latin-1").split(","):
            name, _, params = entry.partition(";")
            name = name.strip().lower()
            if not name:
                continue
            seen += 1
            if seen > MAX_CODINGS:
                return weights
            weight = _weight(params)
            if weight is not None:
                weights.setdefault(_ALIASES.get(name, name), weight)
    return weights


def _weight(params: str) -> float | None:
    """The ``q`` of an entry's parameters; 1 without one; C{None} when malformed."""
    if not params.strip():
        return 1.0
    key, _, value = params.partition("=")
    if key.strip().lower() != "q":
        return None
    return parse_q(value)


def choose(weights: dict[str, float], available: Sequence[str]) -> str | None:
    """The coding of C{available} (in the server's order of preference) the client
    weights highest, above zero; C{"*"} stands for every coding the client does not
    name. C{None} when the client accepts none of them: send the identity."""
    wildcard = weights.get("*", 0.0)
    best: str | None = None
    bestWeight = 0.0
    for coding in available:
        weight = weights.get(coding, wildcard)
        if weight > bestWeight:
            best, bestWeight = coding, weight
    return best


def negotiate(values: Iterable[bytes], available: Sequence[str]) -> str | None:
    """The coding to send a response in, for a request whose Accept-Encoding field
    values are C{values} (none: the client asked for no coding, so none is used)."""
    weights = accepted_codings(values)
    return choose(weights, available) if weights else None
