"""Gasless user actions through OpenZeppelin 5's ERC2771Forwarder.

A portal user's on-chain action (register a work, set a split or terms, distribute, withdraw)
is a call of the ledger contracts made *as the user*: the user's key (custodial, or the user's
own wallet) signs an EIP-712 ``ForwardRequest``; the server's relayer key sends
``forwarder.execute(request)`` and pays the gas; the target contracts read the user as
``_msgSender()`` (ERC2771Context). Nobody but the relayer needs ETH.

    ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,uint48 deadline,bytes data)

The EIP-712 domain is the forwarder's own: name as given to its constructor, version "1", the
chain id and the forwarder's address. :meth:`GaslessRelayer.domain` reads it from the
forwarder (EIP-5267 ``eip712Domain()``), so the name is never guessed.

A per-user daily gas budget (gas of the relayer's transactions, counted per UTC day) stops one
account from draining the relayer: an action that would go over it is refused before anything
is signed or sent.

Actions are rows of ``portal_actions`` (queued -> submitted -> confirmed | failed; a wallet
user's action waits in ``awaiting_signature`` for the wallet's signature), so the portal can
show them as pending until confirmed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from sqlalchemy import BigInteger, Engine, ForeignKey, Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column
from web3 import Web3

from .db import session_scope
from .errors import LedgerError, NotDeployedError
from .models import Base

if TYPE_CHECKING:
    from .accounts import User
    from .chain import Deployment, TxResult

FORWARDER_KEYS = ("TrustedForwarder", "Forwarder", "ERC2771Forwarder")
FORWARD_REQUEST_TYPE = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "gas", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint48"},
    {"name": "data", "type": "bytes"},
]
EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
FORWARD_REQUEST_TYPEHASH = keccak(
    text="ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,uint48 deadline,bytes data)"
)
#: execute(ForwardRequestData) of OZ 5's ERC2771Forwarder, enough to call it and read nonces/domain.
FORWARDER_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "execute",
        "stateMutability": "payable",
        "outputs": [],
        "inputs": [
            {
                "name": "request",
                "type": "tuple",
                "components": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "gas", "type": "uint256"},
                    {"name": "deadline", "type": "uint48"},
                    {"name": "data", "type": "bytes"},
                    {"name": "signature", "type": "bytes"},
                ],
            }
        ],
    },
    {
        "type": "function",
        "name": "nonces",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "eip712Domain",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "fields", "type": "bytes1"},
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
            {"name": "salt", "type": "bytes32"},
            {"name": "extensions", "type": "uint256[]"},
        ],
    },
]
#: Gas the relayer adds on top of the request's own gas (forwarder checks, calldata, 63/64 rule).
EXECUTE_OVERHEAD = 60_000
UINT48_MAX = 2**48 - 1
_ID = BigInteger().with_variant(Integer, "sqlite")


class GaslessError(LedgerError):
    """A gasless action that cannot be built, signed or sent."""


class GasBudgetExceeded(GaslessError):
    """The user's daily gas budget would be exceeded."""


class ForwarderMissing(GaslessError, NotDeployedError):
    """The deployment has no ERC2771Forwarder yet."""


# ----------------------------------------------------------------------------- EIP-712


@dataclass(frozen=True)
class ForwarderDomain:
    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }

    def separator(self) -> bytes:
        """The EIP-712 domain separator, computed by hand (the tests compare it with eth-account)."""
        from eth_abi import encode

        typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    typehash,
                    keccak(text=self.name),
                    keccak(text=self.version),
                    self.chain_id,
                    to_checksum_address(self.verifying_contract),
                ],
            )
        )


@dataclass(frozen=True)
class ForwardRequest:
    from_: str
    to: str
    value: int
    gas: int
    nonce: int
    deadline: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.deadline <= UINT48_MAX:
            raise GaslessError(f"deadline {self.deadline} does not fit uint48")
        if self.value != 0:
            raise GaslessError("portal actions send no ETH (value must be 0)")

    def message(self) -> dict[str, Any]:
        return {
            "from": to_checksum_address(self.from_),
            "to": to_checksum_address(self.to),
            "value": self.value,
            "gas": self.gas,
            "nonce": self.nonce,
            "deadline": self.deadline,
            "data": self.data,
        }

    def typed_data(self, domain: ForwarderDomain) -> dict[str, Any]:
        """The full EIP-712 document (what a wallet's eth_signTypedData_v4 takes; data as 0x-hex)."""
        return {
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "ForwardRequest": FORWARD_REQUEST_TYPE},
            "primaryType": "ForwardRequest",
            "domain": domain.as_dict(),
            "message": {**self.message(), "data": "0x" + self.data.hex()},
        }

    def struct_hash(self) -> bytes:
        from eth_abi import encode

        return keccak(
            encode(
                ["bytes32", "address", "address", "uint256", "uint256", "uint256", "uint48", "bytes32"],
                [
                    FORWARD_REQUEST_TYPEHASH,
                    to_checksum_address(self.from_),
                    to_checksum_address(self.to),
                    self.value,
                    self.gas,
                    self.nonce,
                    self.deadline,
                    keccak(self.data),
                ],
            )
        )

    def digest(self, domain: ForwarderDomain) -> bytes:
        return keccak(b"\x19\x01" + domain.separator() + self.struct_hash())

    def execute_args(self, signature: bytes) -> tuple[str, str, int, int, int, bytes, bytes]:
        """The ForwardRequestData tuple of ``execute`` (no nonce: the forwarder uses its own)."""
        return (
            to_checksum_address(self.from_),
            to_checksum_address(self.to),
            self.value,
            self.gas,
            self.deadline,
            self.data,
            signature,
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "data": "0x" + self.data.hex()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ForwardRequest:
        return cls(
            doc["from_"],
            doc["to"],
            int(doc["value"]),
            int(doc["gas"]),
            int(doc["nonce"]),
            int(doc["deadline"]),
            bytes.fromhex(doc["data"].removeprefix("0x")),
        )


def _signable(request: ForwardRequest, domain: ForwarderDomain) -> SignableMessage:
    return encode_typed_data(
        full_message={
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "ForwardRequest": FORWARD_REQUEST_TYPE},
            "primaryType": "ForwardRequest",
            "domain": domain.as_dict(),
            "message": request.message(),
        }
    )


def sign_request(account: LocalAccount, request: ForwardRequest, domain: ForwarderDomain) -> bytes:
    """The 65-byte signature (r, s, v) of the request by `account` (a LocalAccount)."""
    if to_checksum_address(account.address) != to_checksum_address(request.from_):
        raise GaslessError("a request must be signed by its own `from` account")
    return bytes(account.sign_message(_signable(request, domain)).signature)


def recover_signer(request: ForwardRequest, domain: ForwarderDomain, signature: bytes) -> str:
    try:
        signer: str = Account.recover_message(_signable(request, domain), signature=signature)
        return signer
    except Exception:  # noqa: BLE001 - malformed signature bytes
        raise GaslessError("the signature is not a valid secp256k1 signature") from None


# ----------------------------------------------------------------------------- target calls


def load_abi(build_dir: Path | str, name: str) -> list[dict[str, Any]]:
    """A contract's ABI from the build artifacts (build/contracts/<name>.json)."""
    path = Path(build_dir) / f"{name}.json"
    try:
        abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
        return abi
    except FileNotFoundError:
        raise NotDeployedError(f"no compiled contract {path}: run `brownie compile` first") from None


def encode_call(abi: list[dict[str, Any]], function: str, args: Sequence[Any]) -> bytes:
    """Calldata of `function(args)` by the ABI (argument types checked by web3)."""
    contract = Web3().eth.contract(abi=abi)
    try:
        data = contract.encode_abi(function, args=list(args))
    except Exception as exc:  # noqa: BLE001 - web3 raises several types for bad arguments
        raise GaslessError(f"cannot encode {function}: {exc}") from None
    return bytes.fromhex(data.removeprefix("0x"))


#: Portal action kind -> (contract name in the deployment, function).
ACTIONS: dict[str, tuple[str, str]] = {
    "register_work": ("WorkRegistry", "registerWork"),
    "set_split": ("RoyaltyLedger", "setSplit"),
    "set_terms": ("RoyaltyLedger", "setTerms"),
    "distribute": ("RoyaltyLedger", "distributePacked"),
    "withdraw": ("RoyaltyLedger", "withdraw"),
}


# ----------------------------------------------------------------------------- actions and budget


class PortalAction(Base):
    """One on-chain action of a portal user, from queued to confirmed (off-chain only)."""

    __tablename__ = "portal_actions"
    __table_args__ = (Index(None, "user_id", "day"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text)  # JSON arguments (and follow-ups)
    status: Mapped[str] = mapped_column(String(24))  # queued awaiting_signature submitted confirmed failed
    work_id: Mapped[int | None] = mapped_column(BigInteger)
    request: Mapped[str | None] = mapped_column(Text)  # the ForwardRequest JSON once built
    day: Mapped[int] = mapped_column(Integer)  # UTC day YYYYMMDD the gas counts against
    gas_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    @property
    def arguments(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.params)
        return parsed


def utc_day(ts: float | None = None) -> int:
    d = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return d.year * 10000 + d.month * 100 + d.day


def gas_spent(engine: Engine, user_id: int, day: int | None = None) -> int:
    """Gas the relayer spent (or holds reserved) for the user on a UTC day."""
    a = PortalAction.__table__
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(func.coalesce(a.c.gas_used, a.c.gas_reserved)), 0)).where(
                    a.c.user_id == user_id,
                    a.c.day == (day or utc_day()),
                    a.c.status.in_(("submitted", "confirmed", "failed")),
                )
            ).scalar_one()
        )


def check_budget(engine: Engine, user_id: int, gas: int, daily_budget: int) -> None:
    spent = gas_spent(engine, user_id)
    if spent + gas > daily_budget:
        raise GasBudgetExceeded(
            f"this action needs up to {gas:,} gas and {spent:,} of today's {daily_budget:,} "
            "are used: try again tomorrow (UTC)"
        )


def queue_action(
    engine: Engine, user_id: int, kind: str, params: Mapping[str, Any], work_id: int | None = None
) -> PortalAction:
    if kind not in ACTIONS:
        raise GaslessError(f"unknown action {kind!r}")
    now = int(time.time())
    action = PortalAction(
        user_id=user_id,
        kind=kind,
        params=json.dumps(dict(params)),
        status="queued",
        work_id=work_id,
        day=utc_day(now),
        gas_reserved=0,
        created_at=now,
        updated_at=now,
    )
    with session_scope(engine) as session:
        session.add(action)
    return action


def actions_of(
    engine: Engine, user_id: int, work_id: int | None = None, statuses: Sequence[str] | None = None
) -> list[PortalAction]:
    with session_scope(engine) as session:
        q = select(PortalAction).where(PortalAction.user_id == user_id)
        if work_id is not None:
            q = q.where(PortalAction.work_id == work_id)
        if statuses:
            q = q.where(PortalAction.status.in_(list(statuses)))
        return list(session.scalars(q.order_by(PortalAction.id.desc())))


def get_action(engine: Engine, action_id: int) -> PortalAction | None:
    with session_scope(engine) as session:
        return session.get(PortalAction, action_id)


def _update(engine: Engine, action_id: int, **values: Any) -> None:
    with session_scope(engine) as session:
        action = session.get(PortalAction, action_id)
        if action is None:
            raise GaslessError(f"no portal action {action_id}")
        for k, v in values.items():
            setattr(action, k, v)
        action.updated_at = int(time.time())


# ----------------------------------------------------------------------------- relayer


class GaslessRelayer:
    """Builds, signs (custodial) and sends users' actions through the forwarder.

    ``deployment`` is a :class:`ledger.chain.Deployment`; the forwarder is its ``Forwarder`` (or
    ``ERC2771Forwarder``) contract unless ``forwarder_address`` is given. ``relayer`` is the
    LocalAccount (or unlocked address) that pays: give it a key of its own (two senders on one
    key fight over nonces). Sends of one process are serialised; several processes sharing the
    key can still race for a nonce, in which case the action fails and can be sent again."""

    _send_lock = threading.Lock()

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        relayer: Any,
        engine: Engine,
        daily_budget: int,
        forwarder_address: str | None = None,
        request_ttl: int = 3600,
    ) -> None:
        from .chain import LedgerClient

        self.w3, self.deployment, self.engine = w3, deployment, engine
        self.daily_budget, self.request_ttl = daily_budget, request_ttl
        if forwarder_address is None:
            found = [deployment.contracts[k] for k in FORWARDER_KEYS if k in deployment.contracts]
            if not found:
                raise ForwarderMissing(
                    "the deployment has no ERC2771Forwarder: on-chain portal actions wait "
                    "until the contracts are deployed with one"
                )
            forwarder_address = found[0].address
        self.forwarder = w3.eth.contract(address=to_checksum_address(forwarder_address), abi=FORWARDER_ABI)
        self.client = LedgerClient(w3, deployment, relayer)
        self._domain: ForwarderDomain | None = None

    def domain(self) -> ForwarderDomain:
        if self._domain is None:
            _, name, version, chain_id, verifying, _, _ = self.forwarder.functions.eip712Domain().call()
            self._domain = ForwarderDomain(name, version, chain_id, verifying)
        return self._domain

    def _target(self, kind: str) -> tuple[str, list[dict[str, Any]], str]:
        contract_name, function = ACTIONS[kind]
        info = self.deployment.contracts[contract_name]
        return info.address, info.abi, function

    def build(self, user_address: str, kind: str, args: Sequence[Any]) -> ForwardRequest:
        """The request for `kind(args)` as the user, with gas estimated as a direct call by the user."""
        to, abi, function = self._target(kind)
        data = encode_call(abi, function, args)
        try:
            estimate = self.w3.eth.estimate_gas({"from": user_address, "to": to, "data": data})
        except Exception as exc:  # noqa: BLE001 - the revert is decoded for the user
            from .chain import revert_data

            raw = revert_data(exc)
            raise GaslessError(str(self.client.reverts.decode(raw)) if raw else f"{kind} would fail: {exc}") from None
        nonce = self.forwarder.functions.nonces(user_address).call()
        deadline = self.w3.eth.get_block("latest")["timestamp"] + self.request_ttl
        return ForwardRequest(user_address, to, 0, int(estimate * 1.25) + 10_000, nonce, deadline, data)

    def send(self, action_id: int, user_id: int, request: ForwardRequest, signature: bytes) -> TxResult:
        """Checks signer and budget, sends execute(), records the outcome. Returns the TxResult."""
        if recover_signer(request, self.domain(), signature) != to_checksum_address(request.from_):
            raise GaslessError("the signature is not the user's")
        gas_limit = request.gas + EXECUTE_OVERHEAD + 16 * len(request.data)
        check_budget(self.engine, user_id, gas_limit, self.daily_budget)
        _update(
            self.engine,
            action_id,
            status="submitted",
            gas_reserved=gas_limit,
            day=utc_day(),
            request=json.dumps(request.to_json()),
        )
        try:
            with self._send_lock:
                result = self.client.transact(
                    self.forwarder.functions.execute(request.execute_args(signature)), gas=gas_limit
                )
        except LedgerError as exc:
            _update(self.engine, action_id, status="failed", error=str(exc)[:500])
            raise
        values: dict[str, Any] = {"status": "confirmed", "tx_hash": result.tx_hash, "gas_used": result.gas_used}
        registered = result.named("WorkRegistered")
        if registered:
            values["work_id"] = int(registered[0].args["workId"])
        _update(self.engine, action_id, **values)
        return result

    # ------------------------------------------------------------------ running queued actions
    def _get(self, action_id: int) -> PortalAction:
        action = get_action(self.engine, action_id)
        if action is None:
            raise GaslessError(f"no portal action {action_id}")
        return action

    @staticmethod
    def _work_id(action: PortalAction) -> int:
        if action.work_id is None:
            raise GaslessError(f"{action.kind} needs a work")
        return action.work_id

    def arguments(self, action: PortalAction) -> list[Any]:
        """The target function's arguments for an action (current split looked up on chain)."""
        from .metadata import isrc_to_bytes12
        from .playbatch import pack_split, sorted_split

        p = action.arguments
        if action.kind == "register_work":
            return [p["uri"], isrc_to_bytes12(p.get("isrc"))]
        if action.kind == "set_split":
            # the contract takes splits in ascending address order (ledger.playbatch.sorted_split)
            payees, bps = sorted_split([to_checksum_address(a) for a in p["payees"]], list(p["bps"]))
            return [action.work_id, payees, bps, *sorted_split(*self.client.current_split(self._work_id(action)))]
        if action.kind == "set_terms":
            return [action.work_id, int(p["kind"]), int(p["fee"]), int(p["rate"]), int(p["duration"]), True]
        if action.kind == "distribute":
            return [action.work_id, pack_split(*self.client.current_split(self._work_id(action)))]
        if action.kind == "withdraw":
            return [to_checksum_address(p["to"])]
        if action.kind in LICENSEE_ACTIONS:
            return licensee_arguments(action)
        if action.kind in DEVICE_ACTIONS:
            return device_action_arguments(action)
        raise GaslessError(f"unknown action {action.kind!r}")

    def run(self, action: PortalAction, user: User, server_secret: str | bytes) -> PortalAction:
        """Runs a queued action of `user` (an accounts.User): custodial users' actions are signed
        and sent now; a wallet user's waits for the wallet's signature (:meth:`submit_signed`)."""
        from .accounts import custodial_account

        try:
            if action.kind in LICENSEE_ACTIONS:  # a permit signed, or sent, before the request
                action = prepare_licensee_action(self, action, user, server_secret)
            request = self.build(user.address, action.kind, self.arguments(action))
        except LedgerError as exc:
            _update(self.engine, action.id, status="failed", error=str(exc)[:500])
            raise
        if user.wallet:
            _update(self.engine, action.id, status="awaiting_signature", request=json.dumps(request.to_json()))
            return self._get(action.id)
        signature = sign_request(custodial_account(user, server_secret), request, self.domain())
        self.send(action.id, user.id, request, signature)
        self._follow_ups(action.id, user, server_secret)
        return self._get(action.id)

    def prepare_signature(self, action: PortalAction, user: User) -> ForwardRequest:
        """A wallet user's request, built afresh (nonce, gas, deadline) when the wallet is about to
        sign it: requests built earlier may carry a nonce another action has used since."""
        if action.status != "awaiting_signature" or action.user_id != user.id:
            raise GaslessError("this action is not waiting for a signature")
        request = self.build(user.address, action.kind, self.arguments(action))
        _update(self.engine, action.id, request=json.dumps(request.to_json()))
        return request

    def submit_signed(
        self, action: PortalAction, user: User, signature: bytes, server_secret: str | bytes
    ) -> PortalAction:
        """Sends a wallet user's action with the signature the wallet made over its request."""
        if action.status != "awaiting_signature" or action.request is None or action.user_id != user.id:
            raise GaslessError("this action is not waiting for a signature")
        request = ForwardRequest.from_json(json.loads(action.request))
        if request.nonce != self.forwarder.functions.nonces(user.address).call():
            raise GaslessError("this request was overtaken by another action: sign it again")
        self.send(action.id, user.id, request, signature)
        self._follow_ups(action.id, user, server_secret)
        return self._get(action.id)

    def _follow_ups(self, action_id: int, user: User, server_secret: str | bytes) -> None:
        """A registration's split and terms, queued (and run) once the work id is known."""
        done = self._get(action_id)
        for step in done.arguments.get("then", []):
            follow = queue_action(self.engine, user.id, step["kind"], step["params"], work_id=done.work_id)
            self.run(follow, user, server_secret)


# ============================================================================= licensee actions
#
# A licensee's purchases and escrow, as gasless requests like the artist's actions:
#
# - ``buy_licenses``: RoyaltyLedger.buyLicenses(workIds, kind, maxTotalFee, maxRate, minExpiry),
#   one kind for every work of the basket. The buyer's limits go to the contract, so a terms
#   change between reading and buying makes the purchase revert (FeeAboveMax, RateAboveMax,
#   ExpiryBelowMin). Fees are paid in the settlement token from the licensee's own balance:
#   the token is not ERC-2771 aware, so instead of an approve transaction the licensee signs an
#   ERC-2612 permit (spender: the ledger, value: maxTotalFee) which the relayer submits to the
#   token before the request (anyone may submit a permit; its gas counts against the budget).
# - ``deposit_with_permit``: RoyaltyLedger.depositWithPermit(amount, deadline, v, r, s); the
#   permit travels inside the request, so one relayed transaction moves the tokens.
# - ``request_escrow_withdrawal``: requestEscrowWithdrawal(amount) starts the notice period
#   (ESCROW_NOTICE, seven days); 0 cancels a request.
# - ``withdraw_escrow``: withdrawEscrow(amount, to) once the notice has passed.
#
# A custodial user's permit is signed with the custodial key when the action runs; a wallet
# user's permit is signed in the browser first (status ``awaiting_permit``), then the request.

LICENSEE_ACTIONS: dict[str, tuple[str, str]] = {
    "buy_licenses": ("RoyaltyLedger", "buyLicenses"),
    "deposit_with_permit": ("RoyaltyLedger", "depositWithPermit"),
    "request_escrow_withdrawal": ("RoyaltyLedger", "requestEscrowWithdrawal"),
    "withdraw_escrow": ("RoyaltyLedger", "withdrawEscrow"),
}
ACTIONS.update(LICENSEE_ACTIONS)
#: Transactions the relayer sends itself for a licensee (no forwarder), recorded as actions so
#: their gas counts against the user's budget and shows on the actions page.
RELAYER_TRANSACTIONS = ("fee_permit", "mint_test_tokens")
PERMIT_TYPE = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
#: What the permit path calls on an external settlement token beyond the ABI its deployment stores.
#: TestStablecoin (OpenZeppelin's ERC20Permit) is stored in the deployments file with its whole
#: compiled ABI and used as it is. An external token (LEDGER_TOKEN_ADDRESS) is stored with the
#: interface the ledger reads (ledger.chain.TOKEN_INTERFACES: IERC20Metadata and IERC20Errors, which
#: have allowance and name but not permit or nonces). The portal reads the deployments file, not the
#: build (a server need not have one), so these entries are written here: ERC-2612's permit and
#: nonces, and EIP-5267's eip712Domain (optional: token_domain falls back to name() and "1").
#: tests/webapp/test_gasless.py checks them against the compiled IERC20Permit and IERC5267.
PERMIT_EXTENSION_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "permit",
        "stateMutability": "nonpayable",
        "outputs": [],
        "inputs": [
            {"name": "owner", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
            {"name": "v", "type": "uint8"},
            {"name": "r", "type": "bytes32"},
            {"name": "s", "type": "bytes32"},
        ],
    },
    FORWARDER_ABI[1],  # nonces(address), the same signature as the forwarder's
    FORWARDER_ABI[2],  # eip712Domain(), likewise
]


def token_permit_abi(token_abi: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The settlement token's ABI from the deployment, with the permit path's functions it lacks
    (none for TestStablecoin; see PERMIT_EXTENSION_ABI)."""
    have = {entry.get("name") for entry in token_abi if entry.get("type") == "function"}
    return [dict(entry) for entry in token_abi] + [e for e in PERMIT_EXTENSION_ABI if e["name"] not in have]


PERMIT_TTL = 3600


def permit_typed_data(
    domain: ForwarderDomain, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> dict[str, Any]:
    """The ERC-2612 Permit as an EIP-712 document (what eth_signTypedData_v4 takes)."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Permit": PERMIT_TYPE},
        "primaryType": "Permit",
        "domain": domain.as_dict(),
        "message": {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": int(value),
            "nonce": int(nonce),
            "deadline": int(deadline),
        },
    }


def split_signature(signature: bytes) -> dict[str, Any]:
    """A 65-byte (r, s, v) signature as the {v, r, s} a permit call takes (r, s as 0x-hex)."""
    if len(signature) != 65:
        raise GaslessError("a signature is 65 bytes")
    v = signature[64]
    return {"v": v + 27 if v < 27 else v, "r": "0x" + signature[:32].hex(), "s": "0x" + signature[32:64].hex()}


def permit_signer(typed: Mapping[str, Any], signature: bytes) -> str:
    try:
        signer: str = Account.recover_message(encode_typed_data(full_message=dict(typed)), signature=signature)
        return signer
    except Exception:  # noqa: BLE001 - malformed signature bytes
        raise GaslessError("the permit signature is not a valid secp256k1 signature") from None


def licensee_arguments(action: PortalAction) -> list[Any]:
    """The ledger function's arguments of a licensee action (see the section's notes)."""
    p = action.arguments
    if action.kind == "buy_licenses":
        return [
            [int(w) for w in p["work_ids"]],
            int(p["kind"]),
            int(p["max_total_fee"]),
            int(p["max_rate"]),
            int(p["min_expiry"]),
        ]
    if action.kind == "deposit_with_permit":
        permit = p.get("permit")
        if not permit:
            raise GaslessError("the deposit's permit is not signed yet")
        return [
            int(p["amount"]),
            int(permit["deadline"]),
            int(permit["v"]),
            bytes.fromhex(permit["r"].removeprefix("0x")),
            bytes.fromhex(permit["s"].removeprefix("0x")),
        ]
    if action.kind == "request_escrow_withdrawal":
        return [int(p["amount"])]
    if action.kind == "withdraw_escrow":
        return [int(p["amount"]), to_checksum_address(p["to"])]
    raise GaslessError(f"unknown licensee action {action.kind!r}")


def needs_permit(action: PortalAction) -> bool:
    """Deposits always carry a permit; a purchase does when its fees may be above 0."""
    p = action.arguments
    if action.kind == "deposit_with_permit":
        return True
    return action.kind == "buy_licenses" and int(p["max_total_fee"]) > 0


def permit_value(action: PortalAction) -> int:
    p = action.arguments
    return int(p["amount"] if action.kind == "deposit_with_permit" else p["max_total_fee"])


def set_params(engine: Engine, action_id: int, params: Mapping[str, Any], **values: Any) -> None:
    _update(engine, action_id, params=json.dumps(dict(params)), **values)


def record_relayer_tx(
    engine: Engine, user_id: int, kind: str, params: Mapping[str, Any], result: TxResult, work_id: int | None = None
) -> PortalAction:
    """A transaction the relayer sent itself for the user (permit, devnet mint), as a confirmed
    action: its gas counts against the user's budget."""
    if kind not in RELAYER_TRANSACTIONS:
        raise GaslessError(f"unknown relayer transaction {kind!r}")
    now = int(time.time())
    action = PortalAction(
        user_id=user_id,
        kind=kind,
        params=json.dumps(dict(params)),
        status="confirmed",
        work_id=work_id,
        day=utc_day(now),
        gas_reserved=result.gas_used,
        gas_used=result.gas_used,
        tx_hash=result.tx_hash,
        created_at=now,
        updated_at=now,
    )
    with session_scope(engine) as session:
        session.add(action)
    return action


class LicenseeChain:
    """What the licensee pages read from the chain and the relayer sends for them: the token's
    permit domain and nonces, escrow, withdrawal requests, and the relayer's own transactions."""

    def __init__(self, relayer: GaslessRelayer) -> None:
        self.relayer = relayer
        self.w3 = relayer.w3
        self.client = relayer.client
        token = relayer.deployment.token
        self.token = self.w3.eth.contract(address=token.address, abi=token_permit_abi(token.abi))
        self.spender = relayer.deployment.ledger.address
        self._domain: ForwarderDomain | None = None

    def token_domain(self) -> ForwarderDomain:
        if self._domain is None:
            try:
                _, name, version, chain_id, verifying, _, _ = self.token.functions.eip712Domain().call()
                self._domain = ForwarderDomain(name, version, chain_id, verifying)
            except Exception:  # noqa: BLE001 - a token without EIP-5267: its name and version "1"
                self._domain = ForwarderDomain(
                    self.token.functions.name().call(), "1", self.w3.eth.chain_id, self.token.address
                )
        return self._domain

    def permit_typed_data(self, owner: str, value: int) -> dict[str, Any]:
        nonce = int(self.token.functions.nonces(to_checksum_address(owner)).call())
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + PERMIT_TTL
        return permit_typed_data(self.token_domain(), owner, self.spender, value, nonce, deadline)

    def allowance(self, owner: str) -> int:
        return int(self.token.functions.allowance(to_checksum_address(owner), self.spender).call())

    def submit_permit(self, user_id: int, permit: Mapping[str, Any], owner: str, value: int) -> TxResult:
        """The relayer submits the user's permit to the token (gas counted to the user)."""
        fn = self.token.functions.permit(
            to_checksum_address(owner),
            self.spender,
            int(value),
            int(permit["deadline"]),
            int(permit["v"]),
            bytes.fromhex(permit["r"].removeprefix("0x")),
            bytes.fromhex(permit["s"].removeprefix("0x")),
        )
        check_budget(self.relayer.engine, user_id, 100_000, self.relayer.daily_budget)
        with GaslessRelayer._send_lock:
            return self.client.transact(fn, gas=100_000)

    def mint_test_tokens(self, user_id: int, to: str, amount: int) -> TxResult:
        """Devnet only (TestStablecoin's open faucet), sent and paid by the relayer."""
        if "TestStablecoin" not in self.relayer.deployment.contracts:
            raise GaslessError("the settlement token is not the devnet test token: nothing to mint")
        check_budget(self.relayer.engine, user_id, 100_000, self.relayer.daily_budget)
        with GaslessRelayer._send_lock:
            return self.client.faucet(to, amount)


def sign_permit_for(
    chain: LicenseeChain, action: PortalAction, user: User, server_secret: str | bytes
) -> dict[str, Any]:
    """A custodial user's permit for the action, signed with the custodial key now."""
    from .accounts import custodial_account

    typed = chain.permit_typed_data(user.address, permit_value(action))
    account = custodial_account(user, server_secret)
    signature = bytes(account.sign_message(encode_typed_data(full_message=typed)).signature)
    return {**split_signature(signature), "deadline": typed["message"]["deadline"], "value": permit_value(action)}


def accept_permit_signature(
    engine: Engine, action: PortalAction, user: User, typed: Mapping[str, Any], signature: bytes
) -> PortalAction:
    """Stores a wallet's permit signature over `typed` (checked to be the user's) on its action."""
    if action.status != "awaiting_permit" or action.user_id != user.id:
        raise GaslessError("this action is not waiting for a permit")
    if permit_signer(typed, signature) != to_checksum_address(user.address):
        raise GaslessError("the permit signature is not the user's")
    message = typed["message"]
    if int(message["value"]) != permit_value(action) or to_checksum_address(message["owner"]) != user.address:
        raise GaslessError("the permit is not the one this action needs")
    params = action.arguments
    params["permit"] = {**split_signature(signature), "deadline": int(message["deadline"]), "value": message["value"]}
    set_params(engine, action.id, params, status="queued")
    found = get_action(engine, action.id)
    assert found is not None
    return found


def prepare_licensee_action(
    relayer: GaslessRelayer, action: PortalAction, user: User, server_secret: str | bytes
) -> PortalAction:
    """Before a licensee request is built: its permit is signed (custodial) or must have been
    (wallet), and a purchase's fee permit is submitted to the token so the fee can be taken."""
    if not needs_permit(action):
        return action
    chain = LicenseeChain(relayer)
    params = action.arguments
    value = permit_value(action)
    if action.kind == "buy_licenses" and chain.allowance(user.address) >= value:
        return action  # an earlier permit or approval already covers the fee
    if not params.get("permit"):
        if user.wallet:
            raise GaslessError("sign the token permit with your wallet first")
        params["permit"] = sign_permit_for(chain, action, user, server_secret)
        set_params(relayer.engine, action.id, params)
    if action.kind == "buy_licenses":
        try:  # a purchase the contract refuses anyway (terms, limits) costs no permit
            relayer.build(user.address, action.kind, licensee_arguments(action))
        except GaslessError as exc:
            if not str(exc).startswith("ERC20InsufficientAllowance"):
                raise
        result = chain.submit_permit(user.id, params["permit"], user.address, value)
        record_relayer_tx(relayer.engine, user.id, "fee_permit", {"value": value, "for_action": action.id}, result)
    found = get_action(relayer.engine, action.id)
    assert found is not None
    return found


# ----------------------------------------------------------------------------- device actions
# A licensee's devices (webapp/devices.py): registerDevice with the device key's proof of
# possession (checked by ledger.devices before it is queued), and revokeDevice.

DEVICE_ACTIONS: dict[str, tuple[str, str]] = {
    "register_device": ("RoyaltyLedger", "registerDevice"),
    "revoke_device": ("RoyaltyLedger", "revokeDevice"),
}
ACTIONS.update(DEVICE_ACTIONS)


def device_action_arguments(action: PortalAction) -> list[Any]:
    """registerDevice(device, territory, proof) or revokeDevice(deviceId) of a device action."""
    p = action.arguments
    if action.kind == "register_device":
        territory = str(p["territory"])
        if len(territory) != 2 or not territory.isascii() or not territory.isalpha():
            raise GaslessError(f"territory {territory!r} is not an ISO 3166-1 alpha-2 code")
        signature = bytes.fromhex(str(p["signature"]).removeprefix("0x"))
        return [to_checksum_address(p["device"]), territory.upper().encode("ascii"), signature]
    if action.kind == "revoke_device":
        return [int(p["device_id"])]
    raise GaslessError(f"unknown device action {action.kind!r}")
