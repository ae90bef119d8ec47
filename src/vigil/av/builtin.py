"""Built-in signatures every engine has, bundle or not: the industry's EICAR test file.

The test string is assembled here at run time from pieces, so that no file of Vigil's (source, byte code,
docs) holds it whole and trips another antivirus on the machine.
"""

from __future__ import annotations

from vigil.av.model import Severity, Source, Threat, ThreatType

EICAR_THREAT = Threat("Virus:DOS/EICAR_Test_File", ThreatType.TEST, Severity.LOW, Source.BUILTIN, "eicar")

# EICAR's definition: the 68 characters first, then optionally white space, 128 bytes at most in all.
_PIECES = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS-", "TEST-FILE!$H+H*")
EICAR_MAX_SIZE = 128
_TRAILING = b" \t\r\n\x1a"


def eicar_bytes() -> bytes:
    return "".join(_PIECES).encode()


_EICAR = eicar_bytes()


def is_eicar(data: bytes) -> bool:
    """True for the EICAR test file (by EICAR's own rule, which every antivirus follows)."""
    return len(data) <= EICAR_MAX_SIZE and data.startswith(_EICAR) and not data[len(_EICAR):].strip(_TRAILING)
