"""Exceptions of the ledger, among them one class per custom error of the contracts.

A revert is raised as the class named after the contract's custom error, e.g.
``except SplitIsLocked as e: e.args_dict["workId"]``. Selectors are matched against the ABIs
of the deployed contracts (see :func:`ledger.chain.RevertDecoder`) and against the signatures
below, so errors raised by OpenZeppelin code inside the contracts are named too. An error the
ABI knows but this module does not gets a class made on the fly (still a ``ContractRevert``).
"""
from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""


class UserError(LedgerError):
    """A mistake in what the user asked for (bad address, unknown period, ...).

    The CLI prints these without a traceback and exits with status 2.
    """


class NotDeployedError(LedgerError):
    """No deployments file for this chain, or its contracts have no code."""


class ChainUnavailableError(LedgerError):
    """The JSON-RPC endpoint cannot be reached."""


class IndexerError(LedgerError):
    """The indexer found something it must not paper over."""


class InconsistentEventError(IndexerError):
    """Events disagree with what the indexer derives from earlier events (e.g. `charged`)."""


class ReorgDetectedError(IndexerError):
    """The block at the checkpoint is no longer on the chain; rebuild the index."""


class ContractRevert(LedgerError):
    """A transaction or call reverted. Subclasses are named after the custom error."""

    error_name: str = "ContractRevert"
    signature: str = ""

    def __init__(self, args_dict: dict[str, Any] | None = None, data: bytes = b"", message: str | None = None):
        self.args_dict = dict(args_dict or {})
        self.data = data
        text = message or (f"{self.error_name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.args_dict.items())
                           + ")")
        super().__init__(text)


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


class UnknownRevert(ContractRevert):
    """A revert whose data matches no known error (or carries no data)."""

    error_name = "UnknownRevert"


class RevertString(ContractRevert):
    """A revert with a reason string (``Error(string)``): none of our contracts use them."""

    error_name = "Error"
    signature = "Error(string)"


class Panic(ContractRevert):
    """A Solidity panic (``Panic(uint256)``): assert, overflow, division by zero, ..."""

    error_name = "Panic"
    signature = "Panic(uint256)"


# name -> [(type, name)], from contracts/interfaces/*.sol, contracts/test and OpenZeppelin 5.
KNOWN_ERRORS: dict[str, list[tuple[str, str]]] = {
    # IWorkRegistry
    "IsrcAlreadyRegistered": [("bytes12", "isrc"), ("uint256", "workId")],
    "InvalidIsrc": [("bytes12", "isrc")],
    "EmptyUri": [],
    "NotWorkOwner": [("uint256", "workId"), ("address", "account")],
    # IPayouts
    "NoPayees": [],
    "TooManyPayees": [("uint256", "count")],
    "LengthMismatch": [("uint256", "payees"), ("uint256", "shares")],
    "ZeroAddressPayee": [("uint256", "index")],
    "DuplicatePayee": [("address", "payee")],
    "ZeroShare": [("uint256", "index")],
    "SharesDoNotTotal": [("uint256", "sum")],
    "SplitIsLocked": [("uint256", "workId")],
    "SplitNotSet": [("uint256", "workId")],
    "SplitMismatch": [("uint256", "workId")],
    "NothingToWithdraw": [("address", "payee")],
    "ZeroAddressRecipient": [],
    # ILicensing
    "TermsNotOffered": [("uint256", "workId"), ("uint8", "kind")],
    "FeeAboveMax": [("uint256", "fee"), ("uint256", "maxFee")],
    "RateAboveMax": [("uint32", "rate"), ("uint32", "maxRate")],
    "ZeroDuration": [],
    "ZeroAmount": [],
    "InsufficientEscrow": [("uint256", "available"), ("uint256", "requested")],
    "ExpiryOverflow": [("uint256", "expiry")],
    "NoWorks": [],
    # IDeviceRegistry
    "DeviceAlreadyRegistered": [("address", "device")],
    "ZeroAddressDevice": [],
    "InvalidTerritory": [("bytes2", "territory")],
    "NotDeviceLicensee": [("uint64", "deviceId"), ("address", "account")],
    "UnknownDevice": [("uint64", "deviceId")],
    "DeviceLengthMismatch": [("uint256", "devices"), ("uint256", "territories")],
    # IPlayReporting
    "MalformedBatchData": [("uint256", "offset")],
    "WorkTableFull": [("uint256", "capacity")],
    "BadTableBits": [("uint256", "tableBits")],
    "WorkCounterOverflow": [("uint256", "workId")],
    # TestStablecoin
    "FaucetLimitExceeded": [("uint256", "requested"), ("uint256", "limit")],
    # OpenZeppelin 5
    "ERC20InsufficientBalance": [("address", "sender"), ("uint256", "balance"), ("uint256", "needed")],
    "ERC20InvalidSender": [("address", "sender")],
    "ERC20InvalidReceiver": [("address", "receiver")],
    "ERC20InsufficientAllowance": [("address", "spender"), ("uint256", "allowance"), ("uint256", "needed")],
    "ERC20InvalidApprover": [("address", "approver")],
    "ERC20InvalidSpender": [("address", "spender")],
    "ERC721InvalidOwner": [("address", "owner")],
    "ERC721NonexistentToken": [("uint256", "tokenId")],
    "ERC721IncorrectOwner": [("address", "sender"), ("uint256", "tokenId"), ("address", "owner")],
    "ERC721InvalidSender": [("address", "sender")],
    "ERC721InvalidReceiver": [("address", "receiver")],
    "ERC721InsufficientApproval": [("address", "operator"), ("uint256", "tokenId")],
    "ERC721InvalidApprover": [("address", "approver")],
    "ERC721InvalidOperator": [("address", "operator")],
    "SafeERC20FailedOperation": [("address", "token")],
    "ReentrancyGuardReentrantCall": [],
    "ECDSAInvalidSignature": [],
    "ECDSAInvalidSignatureLength": [("uint256", "length")],
    "ECDSAInvalidSignatureS": [("bytes32", "s")],
}


def _make(name: str, params: list[tuple[str, str]]) -> type[ContractRevert]:
    signature = f"{name}({','.join(t for t, _ in params)})"
    return type(name, (ContractRevert,), {"error_name": name, "signature": signature,
                                          "__doc__": f"The contract reverted with ``{signature}``.",
                                          "__module__": __name__})


_REGISTRY: dict[str, type[ContractRevert]] = {"Error": RevertString, "Panic": Panic}
for _name, _params in KNOWN_ERRORS.items():
    _REGISTRY[_name] = globals()[_name] = _make(_name, _params)
del _name, _params


def error_class(name: str, params: list[tuple[str, str]] | None = None) -> type[ContractRevert]:
    """The exception class of a custom error, made (and remembered) when not known yet."""
    cls = _REGISTRY.get(name)
    if cls is None:
        cls = _REGISTRY[name] = _make(name, params or [])
    return cls


# Names made above, for linters and `from ledger.errors import SplitIsLocked`.
IsrcAlreadyRegistered: type[ContractRevert]
InvalidIsrc: type[ContractRevert]
EmptyUri: type[ContractRevert]
NotWorkOwner: type[ContractRevert]
NoPayees: type[ContractRevert]
TooManyPayees: type[ContractRevert]
LengthMismatch: type[ContractRevert]
ZeroAddressPayee: type[ContractRevert]
DuplicatePayee: type[ContractRevert]
ZeroShare: type[ContractRevert]
SharesDoNotTotal: type[ContractRevert]
SplitIsLocked: type[ContractRevert]
SplitNotSet: type[ContractRevert]
SplitMismatch: type[ContractRevert]
NothingToWithdraw: type[ContractRevert]
ZeroAddressRecipient: type[ContractRevert]
TermsNotOffered: type[ContractRevert]
FeeAboveMax: type[ContractRevert]
RateAboveMax: type[ContractRevert]
ZeroDuration: type[ContractRevert]
ZeroAmount: type[ContractRevert]
InsufficientEscrow: type[ContractRevert]
ExpiryOverflow: type[ContractRevert]
NoWorks: type[ContractRevert]
DeviceAlreadyRegistered: type[ContractRevert]
ZeroAddressDevice: type[ContractRevert]
InvalidTerritory: type[ContractRevert]
NotDeviceLicensee: type[ContractRevert]
UnknownDevice: type[ContractRevert]
DeviceLengthMismatch: type[ContractRevert]
MalformedBatchData: type[ContractRevert]
WorkTableFull: type[ContractRevert]
BadTableBits: type[ContractRevert]
WorkCounterOverflow: type[ContractRevert]
FaucetLimitExceeded: type[ContractRevert]
ERC20InsufficientBalance: type[ContractRevert]
ERC20InsufficientAllowance: type[ContractRevert]
ERC721NonexistentToken: type[ContractRevert]
SafeERC20FailedOperation: type[ContractRevert]
