"""Gasless actions: the OZ 5 ERC2771Forwarder ForwardRequest, signed and encoded, and the daily
gas budget. No forwarder contract is needed: the digest is checked against an independent
computation and the calldata against the contracts' ABIs."""

import json

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from ledger import accounts, gasless
from ledger.gasless import ForwarderDomain, ForwardRequest

KEY = b"\x42" * 32
USER = Account.from_key(KEY)
TARGET = to_checksum_address("0x" + "ab" * 20)
DOMAIN = ForwarderDomain("RoyaltyForwarder", "1", 31337, "0x" + "cd" * 20)


def _request(**changes):
    fields = dict(
        from_=USER.address,
        to=TARGET,
        value=0,
        gas=200_000,
        nonce=7,
        deadline=1_800_000_000,
        data=b"\x12\x34\x56\x78" + b"\x00" * 32,
    )
    fields.update(changes)
    return ForwardRequest(**fields)


def test_typehash_is_oz5_forward_request():
    assert gasless.FORWARD_REQUEST_TYPEHASH == keccak(
        b"ForwardRequest(address from,address to,uint256 value,uint256 gas,uint256 nonce,uint48 deadline,bytes data)"
    )


def test_digest_matches_a_by_hand_eip712_hash():
    request = _request()
    domain_hash = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak(b"RoyaltyForwarder"),
                keccak(b"1"),
                31337,
                DOMAIN.verifying_contract,
            ],
        )
    )
    struct_hash = keccak(
        encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256", "uint256", "bytes32"],
            [
                gasless.FORWARD_REQUEST_TYPEHASH,
                USER.address,
                TARGET,
                0,
                200_000,
                7,
                1_800_000_000,
                keccak(request.data),
            ],
        )
    )
    assert request.digest(DOMAIN) == keccak(b"\x19\x01" + domain_hash + struct_hash)


def test_signature_recovers_to_the_user_over_the_same_digest():
    request = _request()
    signature = gasless.sign_request(USER, request, DOMAIN)
    assert len(signature) == 65
    assert gasless.recover_signer(request, DOMAIN, signature) == USER.address
    # the signature is over request.digest(): recover it from the raw digest too
    from eth_keys import keys

    v = signature[64] - 27
    recovered = keys.Signature(signature[:64] + bytes([v])).recover_public_key_from_msg_hash(request.digest(DOMAIN))
    assert recovered.to_checksum_address() == USER.address


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": 8},
        {"gas": 200_001},
        {"deadline": 1_800_000_001},
        {"data": b"\x00"},
        {"to": to_checksum_address("0x" + "ee" * 20)},
    ],
)
def test_any_changed_field_breaks_the_signature(change):
    signature = gasless.sign_request(USER, _request(), DOMAIN)
    assert gasless.recover_signer(_request(**change), DOMAIN, signature) != USER.address


def test_another_domain_breaks_the_signature():
    signature = gasless.sign_request(USER, _request(), DOMAIN)
    other = ForwarderDomain("RoyaltyForwarder", "1", 1, DOMAIN.verifying_contract)
    assert gasless.recover_signer(_request(), other, signature) != USER.address


def test_only_the_from_account_may_sign():
    with pytest.raises(gasless.GaslessError, match="its own `from`"):
        gasless.sign_request(Account.create(), _request(), DOMAIN)


def test_requests_carry_no_eth_and_a_uint48_deadline():
    with pytest.raises(gasless.GaslessError, match="no ETH"):
        _request(value=1)
    with pytest.raises(gasless.GaslessError, match="uint48"):
        _request(deadline=2**48)


def test_typed_data_is_what_a_wallet_signs():
    typed = _request().typed_data(DOMAIN)
    assert typed["primaryType"] == "ForwardRequest"
    assert [f["name"] for f in typed["types"]["ForwardRequest"]] == [
        "from",
        "to",
        "value",
        "gas",
        "nonce",
        "deadline",
        "data",
    ]
    assert typed["domain"] == {
        "name": "RoyaltyForwarder",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": to_checksum_address(DOMAIN.verifying_contract),
    }
    assert typed["message"]["data"].startswith("0x12345678")
    json.dumps(typed)  # serialisable for eth_signTypedData_v4


def test_execute_arguments_are_forward_request_data_without_nonce():
    request = _request()
    args = request.execute_args(b"\x01" * 65)
    assert args == (USER.address, TARGET, 0, 200_000, 1_800_000_000, request.data, b"\x01" * 65)
    assert ForwardRequest.from_json(json.loads(json.dumps(request.to_json()))) == request


@pytest.fixture(scope="module")
def abis():
    from pathlib import Path

    from tests.support import ROOT

    deployments = sorted(Path(ROOT / "deployments").glob("*.json"))
    build = ROOT / "build" / "contracts"
    if (build / "WorkRegistry.json").exists():
        return {n: gasless.load_abi(build, n) for n in ("WorkRegistry", "RoyaltyLedger")}
    if deployments:
        doc = json.loads(deployments[0].read_text())
        return {n: doc["contracts"][n]["abi"] for n in ("WorkRegistry", "RoyaltyLedger")}
    pytest.skip("no compiled contracts: run `brownie compile`")


def test_register_work_calldata_follows_the_abi(abis):
    data = gasless.encode_call(abis["WorkRegistry"], "registerWork", ["data:x", b"USSKG1912345"])
    assert data[:4] == keccak(b"registerWork(string,bytes12)")[:4]
    assert decode(["string", "bytes12"], data[4:]) == ("data:x", b"USSKG1912345")


def test_withdraw_and_distribute_calldata_follow_the_abi(abis):
    to = USER.address
    assert gasless.encode_call(abis["RoyaltyLedger"], "withdraw", [to])[:4] == keccak(b"withdraw(address)")[:4]
    data = gasless.encode_call(abis["RoyaltyLedger"], "distribute", [1, [to], [10_000]])
    assert (
        decode(["uint256", "address[]", "uint32[]"], data[4:])[0] == 1
        or decode(["uint256", "address[]", "uint16[]"], data[4:])[0] == 1
    )


def test_bad_arguments_are_refused_before_signing(abis):
    with pytest.raises(gasless.GaslessError, match="cannot encode"):
        gasless.encode_call(abis["RoyaltyLedger"], "withdraw", ["not an address"])


def test_action_kinds_name_real_functions(abis):
    for kind, (contract, function) in gasless.ACTIONS.items():
        assert any(item.get("name") == function for item in abis[contract]), kind


# ----------------------------------------------------------------------------- the token's permit ABI


def _functions(abi):
    """name(types) -> (output types, mutability) of an ABI's functions."""
    return {
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})": (
            tuple(o["type"] for o in e["outputs"]),
            e["stateMutability"],
        )
        for e in abi
        if e.get("type") == "function"
    }


@pytest.fixture(scope="module")
def built():
    from tests.support import BUILD_DIR, ensure_compiled

    ensure_compiled()
    return BUILD_DIR


def test_test_stablecoin_permit_abi_is_its_deployment_abi(built):
    stablecoin = gasless.load_abi(built, "TestStablecoin")
    assert gasless.token_permit_abi(stablecoin) == stablecoin


def test_external_token_abi_gets_the_compiled_permit_functions(built):
    """An external token's deployment ABI (IERC20Metadata, IERC20Errors) has no permit: the
    written-out entries added to it are the compiled IERC20Permit's and IERC5267's."""
    from ledger.chain import token_interface_abi

    stored = token_interface_abi(built)
    added = _functions(gasless.token_permit_abi(stored)).items() - _functions(stored).items()
    compiled = _functions(gasless.load_abi(built, "IERC20Permit") + gasless.load_abi(built, "IERC5267"))
    assert {name for name, _ in added} == {
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        "nonces(address)",
        "eip712Domain()",
    }
    assert all(compiled[name] == shape for name, shape in added)
    assert "allowance(address,address)" in _functions(stored) and "name()" in _functions(stored)


# ----------------------------------------------------------------------------- budget


def _spend(engine, user_id, gas, status="confirmed"):
    action = gasless.queue_action(engine, user_id, "withdraw", {"to": USER.address})
    gasless._update(engine, action.id, status=status, gas_reserved=gas, gas_used=gas if status == "confirmed" else None)
    return action


def test_daily_gas_budget_counts_used_and_in_flight_gas(engine):
    user = accounts.create_user(engine, "spender", "long enough password", ["artist"], "s" * 40)
    _spend(engine, user.id, 400_000)
    _spend(engine, user.id, 300_000, status="submitted")
    gasless.queue_action(engine, user.id, "withdraw", {"to": USER.address})  # queued: not spent yet
    assert gasless.gas_spent(engine, user.id) == 700_000
    gasless.check_budget(engine, user.id, 300_000, daily_budget=1_000_000)
    with pytest.raises(gasless.GasBudgetExceeded, match="700,000 of today's 1,000,000"):
        gasless.check_budget(engine, user.id, 300_001, daily_budget=1_000_000)


def test_gas_budget_is_per_user_and_per_day(engine):
    a = accounts.create_user(engine, "spender-a", "long enough password", ["artist"], "s" * 40)
    b = accounts.create_user(engine, "spender-b", "long enough password", ["artist"], "s" * 40)
    old = _spend(engine, a.id, 900_000)
    gasless._update(engine, old.id, day=20000101)
    _spend(engine, b.id, 900_000)
    assert gasless.gas_spent(engine, a.id) == 0
    gasless.check_budget(engine, a.id, 1_000_000, daily_budget=1_000_000)
