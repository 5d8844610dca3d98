"""Web3 client for the ledger contracts: deployment, typed calls, reverts as exceptions.

    w3 = connect("http://127.0.0.1:8545")
    deployment = Deployment.load(settings.deployment_file(w3.eth.chain_id))
    client = LedgerClient(w3, deployment, account)        # account: LocalAccount or unlocked address
    work_id = client.register_work(title="Song", isrc="GBABC2600001")
    client.set_split(work_id, [alice, bob], [7000, 3000])

Every state-changing method estimates gas first, so a revert surfaces before anything is sent
and is raised as the class of :mod:`ledger.errors` named after the custom error (selectors from
the deployed ABIs, see :class:`RevertDecoder`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils import is_address, keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, TimeExhausted

from . import errors
from .errors import ChainUnavailableError, ContractRevert, NotDeployedError, UserError
from .events import DecodedEvent, EventDecoder
from .metadata import isrc_from_bytes12, isrc_to_bytes12, make_data_uri
from .playbatch import (
    Group,
    PlayRecord,
    batch_outcome,
    encode_submission,
    pack_split,
    sign_device_registration,
    sorted_split,
)

CONTRACT_NAMES = ("TestStablecoin", "TrustedForwarder", "WorkRegistry", "RoyaltyLedger")
TOKEN_KEYS = ("TestStablecoin", "Token")  # an external token (LEDGER_TOKEN_ADDRESS) is stored as "Token"

# The settlement token's interface, from the build (OpenZeppelin's IERC20Metadata and its errors):
# what the ledger reads of an external token (LEDGER_TOKEN_ADDRESS), stored in the deployments file.
TOKEN_INTERFACES = ("IERC20Metadata", "IERC20Errors")


class LicenseKind(IntEnum):
    FLAT = 0
    METERED = 1


def checksum(address: str, what: str = "address") -> ChecksumAddress:
    """A checksummed address, or UserError naming what was wrong."""
    if not isinstance(address, str) or not is_address(address):
        raise UserError(f"{what} {address!r} is not an Ethereum address (0x + 40 hex digits)")
    return to_checksum_address(address)


# ----------------------------------------------------------------------------- deployments


@dataclass(frozen=True)
class ContractInfo:
    address: ChecksumAddress
    abi: list[dict[str, Any]]


@dataclass(frozen=True)
class Deployment:
    """The deployments/<chainId>.json file (same format as scripts/deploy.py writes)."""

    chain_id: int
    deploy_block: int
    deployer: str
    contracts: dict[str, ContractInfo] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Deployment:
        try:
            contracts = {
                name: ContractInfo(to_checksum_address(c["address"]), list(c["abi"]))
                for name, c in doc["contracts"].items()
            }
            return cls(int(doc["chainId"]), int(doc["deployBlock"]), to_checksum_address(doc["deployer"]), contracts)
        except (KeyError, TypeError, ValueError) as exc:
            raise NotDeployedError(f"deployments file is not in the expected format: {exc!r}") from None

    @classmethod
    def load(cls, path: Path | str) -> Deployment:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotDeployedError(f"no deployments file {path}: run `ledger deploy` first") from None
        except json.JSONDecodeError as exc:
            raise NotDeployedError(f"deployments file {path} is not JSON: {exc}") from None
        deployment = cls.from_json(doc)
        for name in ("WorkRegistry", "RoyaltyLedger"):
            if name not in deployment.contracts:
                raise NotDeployedError(f"deployments file {path} has no {name}")
        return deployment

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "deployBlock": self.deploy_block,
            "deployer": self.deployer,
            "contracts": {name: {"address": c.address, "abi": c.abi} for name, c in self.contracts.items()},
        }

    def save(self, path: Path | str) -> Path:
        """Writes the file atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_json(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
        return path

    @property
    def token(self) -> ContractInfo:
        for key in TOKEN_KEYS:
            if key in self.contracts:
                return self.contracts[key]
        raise NotDeployedError("the deployment names no settlement token")

    @property
    def works(self) -> ContractInfo:
        return self.contracts["WorkRegistry"]

    @property
    def ledger(self) -> ContractInfo:
        return self.contracts["RoyaltyLedger"]

    @property
    def forwarder(self) -> ContractInfo:
        """The ERC-2771 forwarder both contracts trust (gasless calls)."""
        try:
            return self.contracts["TrustedForwarder"]
        except KeyError:
            raise NotDeployedError("the deployment has no TrustedForwarder: redeploy with `ledger deploy`") from None

    def event_decoder(self) -> EventDecoder:
        # Only the token's Transfer matters to the index (its Approval would be noise).
        transfer = [item for item in self.token.abi if item.get("type") == "event" and item["name"] == "Transfer"]
        return EventDecoder(
            {
                "Token": (self.token.address, transfer),
                "WorkRegistry": (self.works.address, self.works.abi),
                "RoyaltyLedger": (self.ledger.address, self.ledger.abi),
            }
        )


def load_deployment(w3: Web3, path: Path | str) -> Deployment:
    """Loads a deployment and checks it belongs to the chain w3 talks to."""
    deployment = Deployment.load(path)
    chain_id = w3.eth.chain_id
    if deployment.chain_id != chain_id:
        raise NotDeployedError(f"{path} is for chain {deployment.chain_id}, the node is chain {chain_id}")
    if not w3.eth.get_code(deployment.ledger.address):
        raise NotDeployedError(
            f"no contract at RoyaltyLedger {deployment.ledger.address} on chain {chain_id}: "
            "redeploy with `ledger deploy` (a devnet restarted without its state?)"
        )
    return deployment


def load_artifact(build_dir: Path | str, name: str) -> tuple[list[dict[str, Any]], str]:
    """(abi, bytecode) of a compiled contract from build/contracts/<name>.json."""
    path = Path(build_dir) / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotDeployedError(f"no compiled contract {path}: run `brownie compile` first") from None
    bytecode = doc.get("bytecode") or ""
    if not bytecode or bytecode in ("0x", "0x0"):
        raise NotDeployedError(f"{path} has no bytecode (an interface or abstract contract?)")
    return doc["abi"], bytecode if bytecode.startswith("0x") else "0x" + bytecode


# ----------------------------------------------------------------------------- connection


def connect(rpc_url: str, timeout: float = 60) -> Web3:
    """A Web3 for an HTTP(S) or WebSocket-free JSON-RPC URL; ChainUnavailableError when it does not answer."""
    if not rpc_url.startswith(("http://", "https://")):
        raise UserError(f"LEDGER_RPC_URL must be an http(s) URL, not {rpc_url!r}")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        _ = w3.eth.chain_id
    except Exception as exc:  # noqa: BLE001 - requests' ConnectionError, timeouts, bad JSON...
        raise ChainUnavailableError(f"cannot reach the Ethereum node at {rpc_url}: {type(exc).__name__}") from None
    return w3


# ----------------------------------------------------------------------------- reverts


class RevertDecoder:
    """4-byte selector -> exception class, from the ``error`` items of contract ABIs.

    ``Error(string)`` and ``Panic(uint256)`` are built in; every other selector comes from the
    ABIs given (the deployment's, or the build's when deploying), so the decoder cannot drift
    from the contracts. Classes are those of :mod:`ledger.errors`, named after the error.
    """

    def __init__(self, abis: Iterable[Iterable[Mapping[str, Any]]] = ()):
        self.by_selector: dict[bytes, tuple[type[ContractRevert], list[str], list[str]]] = {}
        self._add("Error", ["string"], ["reason"])
        self._add("Panic", ["uint256"], ["code"])
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    inputs = item["inputs"]
                    types = [i["type"] if not i["type"].startswith("tuple") else _tuple_type(i) for i in inputs]
                    self._add(item["name"], types, [i.get("name") or f"arg{k}" for k, i in enumerate(inputs)])

    def _add(self, name: str, types: list[str], names: list[str]) -> None:
        signature = f"{name}({','.join(types)})"
        selector = keccak(text=signature)[:4]
        if selector not in self.by_selector:
            self.by_selector[selector] = (errors.error_class(name, signature), types, names)

    def decode(self, data: bytes | str | None) -> ContractRevert:
        if isinstance(data, str):
            data = bytes.fromhex(data[2:] if data.startswith("0x") else data)
        if not data or len(data) < 4:
            return errors.UnknownRevert(data=data or b"", message="reverted without data")
        known = self.by_selector.get(data[:4])
        if known is None:
            return errors.UnknownRevert(data=data, message=f"reverted with unknown error 0x{data[:4].hex()}")
        cls, types, names = known
        try:
            values = abi_decode(types, data[4:]) if types else ()
        except Exception:  # noqa: BLE001 - eth-abi raises several types for bad data
            return cls(data=data, message=f"{cls.error_name()} (undecodable arguments 0x{data[4:].hex()})")
        args = {
            n: (to_checksum_address(v) if t == "address" else v) for n, t, v in zip(names, types, values, strict=True)
        }
        return cls(args, data)


def _tuple_type(item: Mapping[str, Any]) -> str:
    inner = ",".join(c["type"] if not c["type"].startswith("tuple") else _tuple_type(c) for c in item["components"])
    return f"({inner}){item['type'][5:]}"


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    events: list[DecodedEvent]

    def named(self, name: str) -> list[DecodedEvent]:
        return [e for e in self.events if e.name == name]


@dataclass(frozen=True)
class SubmitResult:
    """What `submitBatches` did: the batches applied and the ones skipped (with reasons)."""

    tx: TxResult
    applied: list[PlayRecord]
    skipped: list[tuple[int, int, str]]  # (device id, nonce, reason)


# ----------------------------------------------------------------------------- client


class Transactor:
    """Acts as one account: calls, transactions and deployments, reverts raised as the classes
    of :mod:`ledger.errors`.

    ``account`` is an eth-account ``LocalAccount`` (signs locally, any node) or the address of
    an account the node unlocks (Anvil's dev accounts). Read-only use needs no account.
    """

    def __init__(
        self,
        w3: Web3,
        account: Any,
        reverts: RevertDecoder,
        events: EventDecoder | None = None,
        receipt_timeout: float = 120,
    ):
        self.w3 = w3
        self.account = account
        self.reverts = reverts
        self.events = events if events is not None else EventDecoder({})
        self.receipt_timeout = receipt_timeout

    @property
    def address(self) -> ChecksumAddress:
        if self.account is None:
            raise UserError("this action sends a transaction: give the client an account")
        if hasattr(self.account, "address"):
            return to_checksum_address(self.account.address)
        return to_checksum_address(self.account)

    def _raise_revert(self, exc: BaseException) -> NoReturn:
        data = revert_data(exc)
        if data is not None:
            raise self.reverts.decode(data) from None
        if isinstance(exc, ContractPanicError):
            raise errors.Panic(message=str(exc)) from None
        raise errors.UnknownRevert(message=str(exc)) from None

    def call(self, fn: Any) -> Any:
        """Runs a view / a dry run of a function; reverts raised as ContractRevert subclasses."""
        try:
            return fn.call({"from": self.address} if self.account is not None else {})
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            self._raise_revert(exc)

    def _send(self, tx: dict[str, Any]) -> Any:
        if hasattr(self.account, "sign_transaction"):
            return self.w3.eth.send_raw_transaction(self.account.sign_transaction(tx).raw_transaction)
        return self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]

    def _receipt(self, tx_hash: Any) -> Any:
        try:
            return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout)
        except TimeExhausted:
            raise ChainUnavailableError(
                f"transaction 0x{bytes(tx_hash).hex()} not mined within {self.receipt_timeout}s"
            ) from None

    def transact(self, fn: Any, gas: int | None = None) -> TxResult:
        """Sends a transaction and waits for its receipt. Reverts are found by estimating first."""
        sender = self.address
        params: dict[str, Any] = {"from": sender}
        try:
            params["gas"] = gas or int(fn.estimate_gas(params) * 1.2) + 20_000
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            self._raise_revert(exc)
        params["nonce"] = self.w3.eth.get_transaction_count(sender, "pending")
        tx = fn.build_transaction(params)
        tx_hash = self._send(tx)
        receipt = self._receipt(tx_hash)
        if receipt["status"] != 1:
            # Mined but reverted (state changed between estimate and inclusion): replay for the reason.
            try:
                replay: Any = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value", "gas")}
                self.w3.eth.call(replay, receipt["blockNumber"] - 1)
            except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
                self._raise_revert(exc)
            raise errors.UnknownRevert(message=f"transaction 0x{bytes(tx_hash).hex()} reverted")
        decoded = [e for e in (self.events.decode(log) for log in receipt["logs"]) if e is not None]
        return TxResult("0x" + bytes(tx_hash).hex(), receipt["blockNumber"], receipt["gasUsed"], decoded)

    def deploy(self, abi: list[dict[str, Any]], bytecode: str, args: Sequence[Any] = ()) -> tuple[ChecksumAddress, int]:
        """Deploys a contract; returns (address, block number)."""
        constructor = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args)
        sender = self.address
        try:
            gas = int(constructor.estimate_gas({"from": sender}) * 1.2) + 50_000
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            self._raise_revert(exc)
        tx = constructor.build_transaction(
            {"from": sender, "gas": gas, "nonce": self.w3.eth.get_transaction_count(sender, "pending")}
        )
        tx_hash = self._send(tx)
        receipt = self._receipt(tx_hash)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise errors.UnknownRevert(message=f"deployment transaction 0x{bytes(tx_hash).hex()} failed")
        return to_checksum_address(receipt["contractAddress"]), int(receipt["blockNumber"])


class LedgerClient(Transactor):
    """Typed calls for every user action on the ledger contracts (see :class:`Transactor` for
    ``account``)."""

    def __init__(self, w3: Web3, deployment: Deployment, account: Any = None, receipt_timeout: float = 120):
        super().__init__(
            w3,
            account,
            RevertDecoder([c.abi for c in deployment.contracts.values()]),
            deployment.event_decoder(),
            receipt_timeout,
        )
        self.deployment = deployment
        self.token = w3.eth.contract(address=deployment.token.address, abi=deployment.token.abi)
        self.works = w3.eth.contract(address=deployment.works.address, abi=deployment.works.abi)
        self.ledger = w3.eth.contract(address=deployment.ledger.address, abi=deployment.ledger.abi)

    def as_account(self, account: Any) -> LedgerClient:
        """The same client acting as another account."""
        return LedgerClient(self.w3, self.deployment, account, self.receipt_timeout)

    # ------------------------------------------------------------------ token
    def token_balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(checksum(address)).call())

    def allowance(self, owner: str) -> int:
        return int(self.token.functions.allowance(checksum(owner), self.ledger.address).call())

    def approve(self, amount: int) -> TxResult:
        return self.transact(self.token.functions.approve(self.ledger.address, amount))

    def ensure_allowance(self, amount: int) -> None:
        """Approves the ledger for `amount` when the current allowance is lower."""
        if amount > 0 and self.allowance(self.address) < amount:
            self.approve(amount)

    def mint(self, to: str, amount: int) -> TxResult:
        """TestStablecoin only (devnet)."""
        return self.transact(self.token.functions.mint(checksum(to), amount))

    def faucet(self, to: str, amount: int) -> TxResult:
        """TestStablecoin only (devnet)."""
        return self.transact(self.token.functions.faucet(checksum(to), amount))

    # ------------------------------------------------------------------ works
    def register_work(
        self, uri: str | None = None, isrc: str | None = None, *, title: str | None = None, iswc: str | None = None
    ) -> int:
        """Registers a work for the account; returns its id. Without `uri`, title/ISWC make a data: URI."""
        if uri is None:
            if not title:
                raise UserError("a work needs a metadata URI or a title")
            uri = make_data_uri(title, iswc)
        result = self.transact(self.works.functions.registerWork(uri, isrc_to_bytes12(isrc)))
        return int(result.named("WorkRegistered")[0].args["workId"])

    def set_work_uri(self, work_id: int, uri: str) -> TxResult:
        return self.transact(self.works.functions.setWorkURI(work_id, uri))

    def transfer_work(self, work_id: int, to: str) -> TxResult:
        return self.transact(self.works.functions.transferFrom(self.address, checksum(to), work_id))

    def owner_of(self, work_id: int) -> str:
        return str(self.call(self.works.functions.ownerOf(work_id)))

    def isrc_of(self, work_id: int) -> str | None:
        return isrc_from_bytes12(self.works.functions.isrcOf(work_id).call())

    def total_works(self) -> int:
        return int(self.works.functions.totalWorks().call())

    # ------------------------------------------------------------------ splits and payouts
    def current_split(self, work_id: int) -> tuple[list[str], list[int]]:
        """The work's split from its latest SplitSet event (([], []) when none)."""
        topic0 = self.events.topic("RoyaltyLedger", "SplitSet")
        logs = self.w3.eth.get_logs(
            {
                "address": self.ledger.address,
                "fromBlock": self.deployment.deploy_block,
                "toBlock": "latest",
                "topics": [topic0, "0x" + work_id.to_bytes(32, "big").hex()],
            }
        )
        if not logs:
            return [], []
        event = self.events.decode(logs[-1])
        if event is None:
            raise NotDeployedError("a SplitSet log the deployment's ABI does not decode")
        return list(event.args["payees"]), list(event.args["bps"])

    def set_split(
        self,
        work_id: int,
        payees: Sequence[str],
        bps: Sequence[int],
        current: tuple[Sequence[str], Sequence[int]] | None = None,
    ) -> TxResult:
        """Sets a work's split; the current split (needed to distribute what is pending) is looked up."""
        cur_payees, cur_bps = sorted_split(*(current if current is not None else self.current_split(work_id)))
        new_payees, new_bps = sorted_split([checksum(p, "payee") for p in payees], list(bps))
        return self.transact(self.ledger.functions.setSplit(work_id, new_payees, new_bps, cur_payees, cur_bps))

    def lock_split(self, work_id: int) -> TxResult:
        return self.transact(self.ledger.functions.lockSplit(work_id))

    def distribute(self, work_id: int, split: tuple[Sequence[str], Sequence[int]] | None = None) -> int:
        """Credits a work's accrual to its payees; returns the amount distributed."""
        payees, bps = split if split is not None else self.current_split(work_id)
        # The packed form (one word per payee): the same split, rules and credits as
        # `distribute`, with less calldata and a one-pass check (docs/gas.md).
        result = self.transact(self.ledger.functions.distributePacked(work_id, pack_split(payees, bps)))
        return sum(e.args["amount"] for e in result.named("Distributed"))

    def withdraw(self, to: str | None = None) -> int:
        """Sends the account's whole balance to `to` (default: itself); returns the amount."""
        result = self.transact(self.ledger.functions.withdraw(checksum(to or self.address, "recipient")))
        return sum(e.args["amount"] for e in result.named("Withdrawn"))

    def balance_of(self, payee: str) -> int:
        return int(self.ledger.functions.balanceOf(checksum(payee, "payee")).call())

    def accrued_of(self, work_id: int) -> int:
        return int(self.ledger.functions.accruedOf(work_id).call())

    def plays_of(self, work_id: int) -> int:
        return int(self.ledger.functions.playsOf(work_id).call())

    def is_split_locked(self, work_id: int) -> bool:
        return bool(self.ledger.functions.isSplitLocked(work_id).call())

    # ------------------------------------------------------------------ licensing
    def set_terms(
        self, work_id: int, kind: LicenseKind | int, fee: int, rate_per_play: int, duration: int, offered: bool = True
    ) -> TxResult:
        return self.transact(self.ledger.functions.setTerms(work_id, int(kind), fee, rate_per_play, duration, offered))

    def terms_of(self, work_id: int, kind: LicenseKind | int) -> tuple[int, int, int, bool]:
        return tuple(self.ledger.functions.termsOf(work_id, int(kind)).call())

    def buy_license(
        self,
        work_id: int,
        kind: LicenseKind | int,
        max_fee: int | None = None,
        max_rate: int | None = None,
        approve: bool = True,
        min_expiry: int = 0,
    ) -> int:
        """Buys or extends a license, approving the fee first when needed; returns the new expiry.
        ``max_fee``, ``max_rate`` (default: the current terms) and ``min_expiry`` (default: any)
        protect the buyer from a terms change between reading and buying."""
        fee, rate, _, _ = self.terms_of(work_id, kind)
        max_fee = fee if max_fee is None else max_fee
        max_rate = rate if max_rate is None else max_rate
        if approve:
            self.ensure_allowance(min(fee, max_fee))
        result = self.transact(self.ledger.functions.buyLicense(work_id, int(kind), max_fee, max_rate, min_expiry))
        return int(result.named("LicenseBought")[0].args["expiry"])

    def buy_licenses(
        self,
        work_ids: Sequence[int],
        kind: LicenseKind | int,
        max_total_fee: int,
        max_rate: int,
        approve: bool = True,
        min_expiry: int = 0,
    ) -> TxResult:
        if approve:
            self.ensure_allowance(max_total_fee)
        return self.transact(
            self.ledger.functions.buyLicenses(list(work_ids), int(kind), max_total_fee, max_rate, min_expiry)
        )

    def license_of(self, licensee: str, work_id: int, kind: LicenseKind | int) -> tuple[int, int]:
        return tuple(self.ledger.functions.licenseOf(checksum(licensee, "licensee"), work_id, int(kind)).call())

    def deposit(self, amount: int, approve: bool = True) -> TxResult:
        if approve:
            self.ensure_allowance(amount)
        return self.transact(self.ledger.functions.deposit(amount))

    def deposit_for(self, licensee: str, amount: int, approve: bool = True) -> TxResult:
        if approve:
            self.ensure_allowance(amount)
        return self.transact(self.ledger.functions.depositFor(checksum(licensee, "licensee"), amount))

    def request_escrow_withdrawal(self, amount: int) -> int:
        """Gives notice of an escrow withdrawal (0 cancels); returns when it becomes available.
        Batches keep charging the escrow during the notice period."""
        result = self.transact(self.ledger.functions.requestEscrowWithdrawal(amount))
        return int(result.named("EscrowWithdrawalRequested")[0].args["availableAt"])

    def escrow_withdrawal_of(self, licensee: str) -> tuple[int, int]:
        """(amount, available at) of the licensee's pending withdrawal request."""
        amount, available_at = self.ledger.functions.escrowWithdrawalOf(checksum(licensee, "licensee")).call()
        return int(amount), int(available_at)

    def escrow_notice(self) -> int:
        return int(self.ledger.functions.ESCROW_NOTICE().call())

    def withdraw_escrow(self, amount: int, to: str | None = None) -> TxResult:
        """Withdraws escrow after a request's notice period (:meth:`request_escrow_withdrawal`)."""
        return self.transact(self.ledger.functions.withdrawEscrow(amount, checksum(to or self.address, "recipient")))

    def escrow_of(self, licensee: str) -> int:
        return int(self.ledger.functions.escrowOf(checksum(licensee, "licensee")).call())

    def licensee_index_of(self, licensee: str) -> int:
        return int(self.ledger.functions.licenseeIndexOf(checksum(licensee, "licensee")).call())

    # ------------------------------------------------------------------ devices
    @staticmethod
    def _territory(territory: str) -> bytes:
        if not isinstance(territory, str) or len(territory) != 2 or not territory.isascii() or not territory.isalpha():
            raise UserError(f"territory {territory!r} is not an ISO 3166-1 alpha-2 code")
        return territory.upper().encode("ascii")

    def device_registration_nonce(self, device: str) -> int:
        return int(self.ledger.functions.deviceRegistrationNonce(checksum(device, "device")).call())

    def device_proof(self, device_key: Any, licensee: str | None = None) -> bytes:
        """The device key's proof of possession for a registration by ``licensee`` (default: this
        client's account). ``device_key``: a private key or LocalAccount; devices sign with
        ``scripts/device.py register-proof`` instead, so their key never leaves them."""
        account = device_key if hasattr(device_key, "unsafe_sign_hash") else Account.from_key(device_key)
        return sign_device_registration(
            account,
            self.deployment.chain_id,
            self.ledger.address,
            licensee or self.address,
            self.device_registration_nonce(account.address),
        )

    def register_device(self, device: str, territory: str, signature: bytes) -> int:
        """Registers a device key for the account with the key's proof of possession
        (:meth:`device_proof`); returns the device id."""
        result = self.transact(
            self.ledger.functions.registerDevice(
                checksum(device, "device"), self._territory(territory), bytes(signature)
            )
        )
        return int(result.named("DeviceRegistered")[0].args["deviceId"])

    def register_devices(
        self, devices: Sequence[str], territories: Sequence[str], signatures: Sequence[bytes]
    ) -> list[int]:
        result = self.transact(
            self.ledger.functions.registerDevices(
                [checksum(d, "device") for d in devices],
                [self._territory(t) for t in territories],
                [bytes(s) for s in signatures],
            )
        )
        return [e.args["deviceId"] for e in result.named("DeviceRegistered")]

    def revoke_device(self, device_id: int) -> TxResult:
        return self.transact(self.ledger.functions.revokeDevice(device_id))

    def device_id_of(self, device: str) -> int:
        return int(self.ledger.functions.deviceIdOf(checksum(device, "device")).call())

    def device_info(self, device_id: int) -> tuple[str, str, int, int]:
        """(device, licensee, revoked at (0: active), not before) of a device id."""
        return tuple(self.ledger.functions.deviceInfo(device_id).call())

    def is_nonce_used(self, device_id: int, nonce: int) -> bool:
        return bool(self.ledger.functions.isNonceUsed(device_id, nonce).call())

    # ------------------------------------------------------------------ plays
    def submit_batches(self, data: bytes | Sequence[Group], gas: int | None = None) -> SubmitResult:
        """Submits signed batches (raw calldata bytes, or groups to encode)."""
        if not isinstance(data, (bytes, bytearray)):
            data = encode_submission(data)
        result = self.transact(self.ledger.functions.submitBatches(bytes(data)), gas=gas)
        outcome = batch_outcome(result.events)
        skipped = [(device_id, nonce, reason) for (device_id, nonce), reason in outcome.skipped.items()]
        return SubmitResult(result, outcome.records, skipped)


# ----------------------------------------------------------------------------- deploy


def token_interface_abi(build_dir: Path | str) -> list[dict[str, Any]]:
    """The ABI the ledger uses for an external settlement token, from the build."""
    abi: list[dict[str, Any]] = []
    for name in TOKEN_INTERFACES:
        path = Path(build_dir) / f"{name}.json"
        try:
            abi += json.loads(path.read_text())["abi"]
        except FileNotFoundError:
            raise NotDeployedError(f"no compiled interface {path}: run `brownie compile` first") from None
    return abi


#: Chain ids of local devnets (Anvil, Hardhat, Ganache), where the open-mint test token may be deployed.
DEVNET_CHAIN_IDS = frozenset({31337, 1337})


def deploy(
    w3: Web3, account: Any, build_dir: Path | str, token_address: str | None = None, test_token: bool = False
) -> Deployment:
    """Deploys the TrustedForwarder (ERC-2771, no admin), WorkRegistry and RoyaltyLedger trusting
    it, and TestStablecoin unless a token is given.

    TestStablecoin has an open faucet: without a token address it is deployed only on a devnet
    chain id, or anywhere when ``test_token`` says so explicitly.
    """
    if token_address is None and not test_token and w3.eth.chain_id not in DEVNET_CHAIN_IDS:
        raise UserError(
            f"chain {w3.eth.chain_id} is not a devnet: give the settlement token "
            "(--token / LEDGER_TOKEN_ADDRESS), or --test-token to deploy the open-mint test token"
        )
    artifacts = {name: load_artifact(build_dir, name) for name in ("TrustedForwarder", "WorkRegistry", "RoyaltyLedger")}
    if token_address is None:
        artifacts["TestStablecoin"] = load_artifact(build_dir, "TestStablecoin")
    deployer = Transactor(w3, account, RevertDecoder(abi for abi, _ in artifacts.values()))
    contracts: dict[str, ContractInfo] = {}
    blocks = []
    if token_address is None:
        abi, bytecode = artifacts["TestStablecoin"]
        token_address, block = deployer.deploy(abi, bytecode)
        contracts["TestStablecoin"] = ContractInfo(token_address, abi)
        blocks.append(block)
    else:
        token_address = checksum(token_address, "LEDGER_TOKEN_ADDRESS")
        if not w3.eth.get_code(token_address):
            raise UserError(f"no contract at token address {token_address}")
        contracts["Token"] = ContractInfo(token_address, token_interface_abi(build_dir))
    forwarder_abi, forwarder_code = artifacts["TrustedForwarder"]
    forwarder_address, block = deployer.deploy(forwarder_abi, forwarder_code)
    blocks.append(block)
    contracts["TrustedForwarder"] = ContractInfo(forwarder_address, forwarder_abi)
    works_abi, works_code = artifacts["WorkRegistry"]
    works_address, block = deployer.deploy(works_abi, works_code, [forwarder_address])
    blocks.append(block)
    contracts["WorkRegistry"] = ContractInfo(works_address, works_abi)
    ledger_abi, ledger_code = artifacts["RoyaltyLedger"]
    ledger_address, block = deployer.deploy(ledger_abi, ledger_code, [token_address, works_address, forwarder_address])
    blocks.append(block)
    contracts["RoyaltyLedger"] = ContractInfo(ledger_address, ledger_abi)
    return Deployment(w3.eth.chain_id, min(blocks), deployer.address, contracts)


def resolve_account(w3: Web3, private_key: str | None) -> Any:
    """The signer: a LocalAccount from a private key, else the node's first unlocked account."""
    if private_key:
        from eth_account import Account

        try:
            return Account.from_key(private_key)
        except Exception:  # noqa: BLE001 - eth-account raises several types; never echo the key
            raise UserError("LEDGER_PRIVATE_KEY is not a valid private key") from None
    accounts = w3.eth.accounts
    if not accounts:
        raise UserError("set LEDGER_PRIVATE_KEY: the node has no unlocked accounts")
    return accounts[0]
