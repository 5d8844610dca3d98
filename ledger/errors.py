"""Every exception the ledger raises on purpose, under one root: :class:`LedgerError`.

The tree::

    LedgerError
    ├── UserError                 a mistake in what the user asked for (CLI exit status 2)
    │   └── ConfigError           a LEDGER_* setting has a value the ledger cannot use
    ├── NotDeployedError          no deployments file for this chain, or no code at its addresses
    ├── ChainUnavailableError     the JSON-RPC endpoint cannot be reached
    ├── DatabaseError             the database cannot be reached or its schema is not at head
    ├── BatchFormatError          a play batch or submission cannot be encoded (ledger.playbatch)
    ├── IngestError               a device's batch refused; ``code``/``status`` (ledger.ingest)
    ├── RelayerError              the relayer cannot go on with a transaction (ledger.relayer)
    ├── IndexerError              the indexer found something it must not paper over
    │   ├── InconsistentEventError
    │   └── ReorgDetectedError
    └── ContractRevert            a transaction or call reverted
        ├── UnknownRevert, RevertString (``Error(string)``), Panic (``Panic(uint256)``)
        └── one class per custom error of the deployed contracts, named after it

A revert is raised as the class named after the contract's custom error, e.g.
``except SplitIsLocked as e: e.args_dict["workId"]``. The selectors and argument names come from
the compiled ABIs (:class:`ledger.chain.RevertDecoder`), never from a list kept here; the classes
below only give each error a name to catch, and a test checks that every custom error in the
build has one (an error the ABI knows but this module does not still decodes, as a class made on
the fly).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""


class UserError(LedgerError):
    """A mistake in what the user asked for (bad address, unknown period, ...).

    The CLI prints these without a traceback and exits with status 2.
    """


class ConfigError(UserError):
    """A setting has a value the ledger cannot use."""


class NotDeployedError(LedgerError):
    """No deployments file for this chain, or its contracts have no code."""


class ChainUnavailableError(LedgerError):
    """The JSON-RPC endpoint cannot be reached."""


class DatabaseError(LedgerError):
    """The database cannot be reached, or its schema is not the one this code needs."""


class BatchFormatError(LedgerError):
    """A play batch, entry list or submission that cannot be encoded."""


class IngestError(LedgerError):
    """A device's batch refused at ingest. ``code`` is stable (clients match on it), ``status`` is
    the HTTP status; the subclasses live in :mod:`ledger.ingest`."""

    code: ClassVar[str] = "invalid_batch"
    status: ClassVar[int] = 422

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class RelayerError(LedgerError):
    """The relayer cannot go on with a transaction (it reconciles and retries)."""


class IndexerError(LedgerError):
    """The indexer found something it must not paper over."""


class InconsistentEventError(IndexerError):
    """Events disagree with what the indexer derives from earlier events (e.g. `charged`)."""


class ReorgDetectedError(IndexerError):
    """The block at the checkpoint is no longer on the chain; rebuild the index."""


# ----------------------------------------------------------------------------- reverts


class ContractRevert(LedgerError):
    """A transaction or call reverted. Subclasses are named after the custom error."""

    signature: ClassVar[str] = ""

    def __init__(self, args_dict: dict[str, Any] | None = None, data: bytes = b"", message: str | None = None) -> None:
        self.args_dict = dict(args_dict or {})
        self.data = data
        if message is None:
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args_dict.items())
            message = f"{self.error_name()}({inner})"
        super().__init__(message)

    @classmethod
    def error_name(cls) -> str:
        """The Solidity name of the error (the signature up to its parenthesis)."""
        return cls.signature.split("(", 1)[0] if cls.signature else cls.__name__


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


class UnknownRevert(ContractRevert):
    """A revert whose data matches no known error (or carries no data)."""


class RevertString(ContractRevert):
    """A revert with a reason string (``Error(string)``): none of our contracts use them."""

    signature = "Error(string)"


class Panic(ContractRevert):
    """A Solidity panic (``Panic(uint256)``): assert, overflow, division by zero, ..."""

    signature = "Panic(uint256)"


@functools.cache
def revert_classes() -> dict[str, type[ContractRevert]]:
    """Solidity error name -> its class, for every class of this module."""
    found: dict[str, type[ContractRevert]] = {}
    for value in globals().values():
        if isinstance(value, type) and issubclass(value, ContractRevert) and value.signature:
            found[value.error_name()] = value
    return found


_MADE: dict[str, type[ContractRevert]] = {}


def error_class(name: str, signature: str | None = None) -> type[ContractRevert]:
    """The class of a custom error: this module's, or one made on the fly (and remembered) for an
    error the module does not name (a newer contract; the build test catches that)."""
    known = revert_classes().get(name) or _MADE.get(name)
    if known is None:
        signature = signature or f"{name}()"
        doc = f"``{signature}`` (not named in ledger.errors)."
        known = _MADE[name] = type(
            name, (ContractRevert,), {"signature": signature, "__module__": __name__, "__doc__": doc}
        )
    return known


# One class per custom error in the ABIs of the contracts `ledger deploy` deploys (RoyaltyLedger,
# WorkRegistry, TrustedForwarder, TestStablecoin), OpenZeppelin's among them.
# tests/ledger/test_errors.py checks the list against the build.


class AccrualOverflow(ContractRevert):
    """``AccrualOverflow(uint256)`` (RoyaltyLedger)."""

    signature = "AccrualOverflow(uint256)"


class BadDeviceSignature(ContractRevert):
    """``BadDeviceSignature(address,address)`` (RoyaltyLedger)."""

    signature = "BadDeviceSignature(address,address)"


class BadTableBits(ContractRevert):
    """``BadTableBits(uint256)`` (RoyaltyLedger)."""

    signature = "BadTableBits(uint256)"


class DeviceAlreadyRegistered(ContractRevert):
    """``DeviceAlreadyRegistered(address)`` (RoyaltyLedger)."""

    signature = "DeviceAlreadyRegistered(address)"


class DeviceLengthMismatch(ContractRevert):
    """``DeviceLengthMismatch(uint256,uint256)`` (RoyaltyLedger)."""

    signature = "DeviceLengthMismatch(uint256,uint256)"


class DirtySplitWord(ContractRevert):
    """``DirtySplitWord(uint256)`` (RoyaltyLedger)."""

    signature = "DirtySplitWord(uint256)"


class DuplicatePayee(ContractRevert):
    """``DuplicatePayee(address)`` (RoyaltyLedger)."""

    signature = "DuplicatePayee(address)"


class ECDSAInvalidSignature(ContractRevert):
    """``ECDSAInvalidSignature()`` (TestStablecoin)."""

    signature = "ECDSAInvalidSignature()"


class ECDSAInvalidSignatureLength(ContractRevert):
    """``ECDSAInvalidSignatureLength(uint256)`` (TestStablecoin)."""

    signature = "ECDSAInvalidSignatureLength(uint256)"


class ECDSAInvalidSignatureS(ContractRevert):
    """``ECDSAInvalidSignatureS(bytes32)`` (TestStablecoin)."""

    signature = "ECDSAInvalidSignatureS(bytes32)"


class ERC20InsufficientAllowance(ContractRevert):
    """``ERC20InsufficientAllowance(address,uint256,uint256)`` (TestStablecoin)."""

    signature = "ERC20InsufficientAllowance(address,uint256,uint256)"


class ERC20InsufficientBalance(ContractRevert):
    """``ERC20InsufficientBalance(address,uint256,uint256)`` (TestStablecoin)."""

    signature = "ERC20InsufficientBalance(address,uint256,uint256)"


class ERC20InvalidApprover(ContractRevert):
    """``ERC20InvalidApprover(address)`` (TestStablecoin)."""

    signature = "ERC20InvalidApprover(address)"


class ERC20InvalidReceiver(ContractRevert):
    """``ERC20InvalidReceiver(address)`` (TestStablecoin)."""

    signature = "ERC20InvalidReceiver(address)"


class ERC20InvalidSender(ContractRevert):
    """``ERC20InvalidSender(address)`` (TestStablecoin)."""

    signature = "ERC20InvalidSender(address)"


class ERC20InvalidSpender(ContractRevert):
    """``ERC20InvalidSpender(address)`` (TestStablecoin)."""

    signature = "ERC20InvalidSpender(address)"


class ERC2612ExpiredSignature(ContractRevert):
    """``ERC2612ExpiredSignature(uint256)`` (TestStablecoin)."""

    signature = "ERC2612ExpiredSignature(uint256)"


class ERC2612InvalidSigner(ContractRevert):
    """``ERC2612InvalidSigner(address,address)`` (TestStablecoin)."""

    signature = "ERC2612InvalidSigner(address,address)"


class ERC2771ForwarderExpiredRequest(ContractRevert):
    """``ERC2771ForwarderExpiredRequest(uint48)`` (TrustedForwarder)."""

    signature = "ERC2771ForwarderExpiredRequest(uint48)"


class ERC2771ForwarderInvalidSigner(ContractRevert):
    """``ERC2771ForwarderInvalidSigner(address,address)`` (TrustedForwarder)."""

    signature = "ERC2771ForwarderInvalidSigner(address,address)"


class ERC2771ForwarderMismatchedValue(ContractRevert):
    """``ERC2771ForwarderMismatchedValue(uint256,uint256)`` (TrustedForwarder)."""

    signature = "ERC2771ForwarderMismatchedValue(uint256,uint256)"


class ERC2771ForwarderNoRefundReceiver(ContractRevert):
    """``ERC2771ForwarderNoRefundReceiver()`` (TrustedForwarder)."""

    signature = "ERC2771ForwarderNoRefundReceiver()"


class ERC2771UntrustfulTarget(ContractRevert):
    """``ERC2771UntrustfulTarget(address,address)`` (TrustedForwarder)."""

    signature = "ERC2771UntrustfulTarget(address,address)"


class ERC721IncorrectOwner(ContractRevert):
    """``ERC721IncorrectOwner(address,uint256,address)`` (WorkRegistry)."""

    signature = "ERC721IncorrectOwner(address,uint256,address)"


class ERC721InsufficientApproval(ContractRevert):
    """``ERC721InsufficientApproval(address,uint256)`` (WorkRegistry)."""

    signature = "ERC721InsufficientApproval(address,uint256)"


class ERC721InvalidApprover(ContractRevert):
    """``ERC721InvalidApprover(address)`` (WorkRegistry)."""

    signature = "ERC721InvalidApprover(address)"


class ERC721InvalidOperator(ContractRevert):
    """``ERC721InvalidOperator(address)`` (WorkRegistry)."""

    signature = "ERC721InvalidOperator(address)"


class ERC721InvalidOwner(ContractRevert):
    """``ERC721InvalidOwner(address)`` (WorkRegistry)."""

    signature = "ERC721InvalidOwner(address)"


class ERC721InvalidReceiver(ContractRevert):
    """``ERC721InvalidReceiver(address)`` (WorkRegistry)."""

    signature = "ERC721InvalidReceiver(address)"


class ERC721InvalidSender(ContractRevert):
    """``ERC721InvalidSender(address)`` (WorkRegistry)."""

    signature = "ERC721InvalidSender(address)"


class ERC721NonexistentToken(ContractRevert):
    """``ERC721NonexistentToken(uint256)`` (WorkRegistry)."""

    signature = "ERC721NonexistentToken(uint256)"


class EmptyUri(ContractRevert):
    """``EmptyUri()`` (WorkRegistry)."""

    signature = "EmptyUri()"


class ExpiryBelowMin(ContractRevert):
    """``ExpiryBelowMin(uint64,uint64)`` (RoyaltyLedger)."""

    signature = "ExpiryBelowMin(uint64,uint64)"


class ExpiryOverflow(ContractRevert):
    """``ExpiryOverflow(uint256)`` (RoyaltyLedger)."""

    signature = "ExpiryOverflow(uint256)"


class FailedCall(ContractRevert):
    """``FailedCall()`` (TrustedForwarder)."""

    signature = "FailedCall()"


class FaucetLimitExceeded(ContractRevert):
    """``FaucetLimitExceeded(uint256,uint256)`` (TestStablecoin)."""

    signature = "FaucetLimitExceeded(uint256,uint256)"


class FeeAboveMax(ContractRevert):
    """``FeeAboveMax(uint256,uint256)`` (RoyaltyLedger)."""

    signature = "FeeAboveMax(uint256,uint256)"


class InsufficientBalance(ContractRevert):
    """``InsufficientBalance(uint256,uint256)`` (TrustedForwarder)."""

    signature = "InsufficientBalance(uint256,uint256)"


class InsufficientEscrow(ContractRevert):
    """``InsufficientEscrow(uint256,uint256)`` (RoyaltyLedger)."""

    signature = "InsufficientEscrow(uint256,uint256)"


class InvalidAccountNonce(ContractRevert):
    """``InvalidAccountNonce(address,uint256)`` (TestStablecoin, TrustedForwarder)."""

    signature = "InvalidAccountNonce(address,uint256)"


class InvalidIsrc(ContractRevert):
    """``InvalidIsrc(bytes12)`` (WorkRegistry)."""

    signature = "InvalidIsrc(bytes12)"


class InvalidShortString(ContractRevert):
    """``InvalidShortString()`` (TestStablecoin, TrustedForwarder, RoyaltyLedger)."""

    signature = "InvalidShortString()"


class InvalidTerritory(ContractRevert):
    """``InvalidTerritory(bytes2)`` (RoyaltyLedger)."""

    signature = "InvalidTerritory(bytes2)"


class IsrcAlreadyRegistered(ContractRevert):
    """``IsrcAlreadyRegistered(bytes12,uint256)`` (WorkRegistry)."""

    signature = "IsrcAlreadyRegistered(bytes12,uint256)"


class LengthMismatch(ContractRevert):
    """``LengthMismatch(uint256,uint256)`` (RoyaltyLedger)."""

    signature = "LengthMismatch(uint256,uint256)"


class MalformedBatchData(ContractRevert):
    """``MalformedBatchData(uint256)`` (RoyaltyLedger)."""

    signature = "MalformedBatchData(uint256)"


class NoPayees(ContractRevert):
    """``NoPayees()`` (RoyaltyLedger)."""

    signature = "NoPayees()"


class NoWorks(ContractRevert):
    """``NoWorks()`` (RoyaltyLedger)."""

    signature = "NoWorks()"


class NotDeviceLicensee(ContractRevert):
    """``NotDeviceLicensee(uint64,address)`` (RoyaltyLedger)."""

    signature = "NotDeviceLicensee(uint64,address)"


class NotWorkOwner(ContractRevert):
    """``NotWorkOwner(uint256,address)`` (WorkRegistry, RoyaltyLedger)."""

    signature = "NotWorkOwner(uint256,address)"


class NothingToWithdraw(ContractRevert):
    """``NothingToWithdraw(address)`` (RoyaltyLedger)."""

    signature = "NothingToWithdraw(address)"


class PayeesOutOfOrder(ContractRevert):
    """``PayeesOutOfOrder(uint256)`` (RoyaltyLedger)."""

    signature = "PayeesOutOfOrder(uint256)"


class RateAboveMax(ContractRevert):
    """``RateAboveMax(uint32,uint32)`` (RoyaltyLedger)."""

    signature = "RateAboveMax(uint32,uint32)"


class RateTooHigh(ContractRevert):
    """``RateTooHigh(uint32)`` (RoyaltyLedger)."""

    signature = "RateTooHigh(uint32)"


class RecipientIsLedger(ContractRevert):
    """``RecipientIsLedger()`` (RoyaltyLedger)."""

    signature = "RecipientIsLedger()"


class ReentrancyGuardReentrantCall(ContractRevert):
    """``ReentrancyGuardReentrantCall()`` (RoyaltyLedger)."""

    signature = "ReentrancyGuardReentrantCall()"


class SafeERC20FailedOperation(ContractRevert):
    """``SafeERC20FailedOperation(address)`` (RoyaltyLedger)."""

    signature = "SafeERC20FailedOperation(address)"


class SharesDoNotTotal(ContractRevert):
    """``SharesDoNotTotal(uint256)`` (RoyaltyLedger)."""

    signature = "SharesDoNotTotal(uint256)"


class SplitIsLocked(ContractRevert):
    """``SplitIsLocked(uint256)`` (RoyaltyLedger)."""

    signature = "SplitIsLocked(uint256)"


class SplitMismatch(ContractRevert):
    """``SplitMismatch(uint256)`` (RoyaltyLedger)."""

    signature = "SplitMismatch(uint256)"


class SplitNotSet(ContractRevert):
    """``SplitNotSet(uint256)`` (RoyaltyLedger)."""

    signature = "SplitNotSet(uint256)"


class StringTooLong(ContractRevert):
    """``StringTooLong(string)`` (TestStablecoin, TrustedForwarder, RoyaltyLedger)."""

    signature = "StringTooLong(string)"


class TermsNotOffered(ContractRevert):
    """``TermsNotOffered(uint256,uint8)`` (RoyaltyLedger)."""

    signature = "TermsNotOffered(uint256,uint8)"


class TooManyPayees(ContractRevert):
    """``TooManyPayees(uint256)`` (RoyaltyLedger)."""

    signature = "TooManyPayees(uint256)"


class UnknownDevice(ContractRevert):
    """``UnknownDevice(uint64)`` (RoyaltyLedger)."""

    signature = "UnknownDevice(uint64)"


class WithdrawalNotRequested(ContractRevert):
    """``WithdrawalNotRequested(uint256,uint256)`` (RoyaltyLedger)."""

    signature = "WithdrawalNotRequested(uint256,uint256)"


class WithdrawalNotYetAvailable(ContractRevert):
    """``WithdrawalNotYetAvailable(uint64)`` (RoyaltyLedger)."""

    signature = "WithdrawalNotYetAvailable(uint64)"


class WorkTableFull(ContractRevert):
    """``WorkTableFull(uint256)`` (RoyaltyLedger)."""

    signature = "WorkTableFull(uint256)"


class ZeroAddressDevice(ContractRevert):
    """``ZeroAddressDevice()`` (RoyaltyLedger)."""

    signature = "ZeroAddressDevice()"


class ZeroAddressPayee(ContractRevert):
    """``ZeroAddressPayee(uint256)`` (RoyaltyLedger)."""

    signature = "ZeroAddressPayee(uint256)"


class ZeroAddressRecipient(ContractRevert):
    """``ZeroAddressRecipient()`` (RoyaltyLedger)."""

    signature = "ZeroAddressRecipient()"


class ZeroAmount(ContractRevert):
    """``ZeroAmount()`` (RoyaltyLedger)."""

    signature = "ZeroAmount()"


class ZeroDuration(ContractRevert):
    """``ZeroDuration()`` (RoyaltyLedger)."""

    signature = "ZeroDuration()"


class ZeroShare(ContractRevert):
    """``ZeroShare(uint256)`` (RoyaltyLedger)."""

    signature = "ZeroShare(uint256)"
