"""The edge network's finer errors, each with the HTTP status the coordinator answers with.

All subclass NetworkError / LedgerError from wasm_torch.errors, so callers catch one tree:

    NetworkError
    ├── BadMessage          400  malformed JSON, wrong fields or types, bad tensors, wrong hash
    │   └── TooLarge        413  a body, tensor or artifact over its limit
    ├── BadSignature        401  a signature that does not verify, or an unknown sender key
    ├── Forbidden           403  banned or low-reputation node, someone else's assignment, untrusted signer
    ├── UnknownObject       404  unknown task, assignment, job, artifact or account
    ├── Conflict            409  a replayed nonce, a conflicting duplicate submission
    ├── LateResult          410  a result after its lease expired, or for a task already decided
    ├── SlowDown            429  too many unattributable bad requests from one address
    ├── Unreachable         --   (client side) a coordinator cannot be reached after retries
    └── LedgerError
        ├── InsufficientCredit 402  a reservation, stake or spend larger than the credit held
        └── BadEntry        400  a ledger entry that is malformed, forged or from an unknown issuer

`offence` names the reputation penalty (economy.PENALTY) when the error is attributable: the
message's signature verified, so the node it names provably sent it. Unattributable errors (a bad
signature, a replayed nonce: anyone can copy bytes off the wire) cost no node anything; they are
counted per reason on the coordinator's status page instead (see docs/network.md).
"""

from __future__ import annotations

from ..errors import LedgerError, NetworkError


class NetError(NetworkError):
    status = 400

    def __init__(self, message: str, *, offence: str | None = None) -> None:
        super().__init__(message)
        self.offence = offence


class BadMessage(NetError):
    status = 400


class TooLarge(BadMessage):
    status = 413


class BadSignature(NetError):
    status = 401


class Forbidden(NetError):
    status = 403


class UnknownObject(NetError):
    status = 404


class Conflict(NetError):
    status = 409


class LateResult(NetError):
    status = 410


class SlowDown(NetError):
    status = 429


class Unreachable(NetworkError):
    """A peer did not answer (connection refused, timeout, 5xx) after every retry."""


class InsufficientCredit(LedgerError):
    status = 402


class BadEntry(LedgerError):
    status = 400


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error raised while handling a request (400 for other known errors)."""
    return int(getattr(exc, "status", 400))
