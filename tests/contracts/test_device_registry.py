"""DeviceRegistry: device keys registered by licensees with the key's proof of possession
(EIP-712), territory, revocation from a point in time, re-registration after revocation."""

import brownie
from brownie import ZERO_ADDRESS, chain
from eth_account import Account

from contract_helpers import err, new_key, registration_digest, sign_registration


def register(ledger, licensee, key, territory=b"GB"):
    return ledger.registerDevice(key.address, territory, sign_registration(ledger, key, licensee), {"from": licensee})


def test_registerDevice_registers_key_under_caller(ledger, licensee):
    key = new_key()

    tx = register(ledger, licensee, key)

    index = ledger.licenseeIndexOf(licensee)
    device_id = (index << 32) | 1
    ev = tx.events["DeviceRegistered"]
    assert (ev["deviceId"], ev["device"], ev["licensee"], bytes(ev["territory"])) == (
        device_id,
        key.address,
        licensee,
        b"GB",
    )
    assert tx.return_value == device_id
    assert index == 1 and tx.events["LicenseeRegistered"]["licenseeIndex"] == 1
    assert ledger.deviceIdOf(key.address) == device_id
    assert tuple(ledger.deviceInfo(device_id)) == (key.address, licensee, 0, 0)
    assert ledger.deviceCountOf(licensee) == 1
    assert ledger.deviceRegistrationNonce(key.address) == 1


def test_deviceRegistrationDigest_matches_digest_computed_with_eth_account(ledger, licensee):
    key = new_key()
    assert bytes(ledger.deviceRegistrationDigest(key.address, licensee)) == registration_digest(
        ledger, key.address, licensee.address, 0
    )


def test_registerDevices_numbers_devices_per_licensee(ledger, licensee, licensee2):
    keys = [new_key() for _ in range(3)]
    register(ledger, licensee2, new_key(), b"US")

    tx = ledger.registerDevices(
        [k.address for k in keys],
        [b"GB", b"FR", b"DE"],
        [sign_registration(ledger, k, licensee) for k in keys],
        {"from": licensee},
    )

    index = ledger.licenseeIndexOf(licensee)
    assert index == 2
    assert [e["deviceId"] for e in tx.events["DeviceRegistered"]] == [(index << 32) | n for n in (1, 2, 3)]
    assert [bytes(e["territory"]) for e in tx.events["DeviceRegistered"]] == [b"GB", b"FR", b"DE"]
    assert ledger.deviceCountOf(licensee) == 3
    assert ledger.deviceCountOf(licensee2) == 1


def test_registerDevices_reverts_on_length_mismatch(ledger, licensee):
    keys = [new_key(), new_key()]
    with brownie.reverts(err("DeviceLengthMismatch(uint256,uint256)", 2, 1)):
        ledger.registerDevices(
            [k.address for k in keys],
            [b"GB"],
            [sign_registration(ledger, k, licensee) for k in keys],
            {"from": licensee},
        )
    with brownie.reverts(err("DeviceLengthMismatch(uint256,uint256)", 2, 1)):
        ledger.registerDevices(
            [k.address for k in keys],
            [b"GB", b"GB"],
            [sign_registration(ledger, keys[0], licensee)],
            {"from": licensee},
        )


# --- finding 6: proof of possession --------------------------------------------------------------


def test_registerDevice_reverts_without_device_signature_so_nobody_squats_a_key(ledger, licensee, outsider):
    # The squatter knows the device's address (it is public) but not its key.
    key = new_key()
    forged = sign_registration(ledger, new_key(), outsider, nonce=0)

    with brownie.reverts():
        ledger.registerDevice(key.address, b"GB", forged, {"from": outsider})

    assert ledger.deviceIdOf(key.address) == 0
    register(ledger, licensee, key)  # the real owner still can
    assert tuple(ledger.deviceInfo(ledger.deviceIdOf(key.address)))[1] == licensee


def test_registerDevice_reverts_with_proof_made_for_another_licensee(ledger, licensee, outsider):
    key = new_key()
    proof_for_licensee = sign_registration(ledger, key, licensee)

    with brownie.reverts():
        ledger.registerDevice(key.address, b"GB", proof_for_licensee, {"from": outsider})


def test_registerDevice_reverts_with_bad_signature_naming_the_signer(ledger, licensee):
    key, other = new_key(), new_key()
    sig = sign_registration(ledger, other, licensee, nonce=0)
    # The signature recovers to someone: not the device.
    digest = ledger.deviceRegistrationDigest(key.address, licensee)
    signer = Account._recover_hash(bytes(digest), signature=sig)

    with brownie.reverts(err("BadDeviceSignature(address,address)", key.address, signer)):
        ledger.registerDevice(key.address, b"GB", sig, {"from": licensee})


def test_registerDevice_reverts_when_key_has_active_registration(ledger, licensee, licensee2):
    key = new_key()
    register(ledger, licensee, key)

    with brownie.reverts(err("DeviceAlreadyRegistered(address)", key.address)):
        register(ledger, licensee2, key)


def test_registerDevice_again_after_revocation_gives_new_id_valid_after_revocation(ledger, licensee, licensee2):
    key = new_key()
    first = register(ledger, licensee, key).return_value
    revoked_at = ledger.revokeDevice(first, {"from": licensee}).events["DeviceRevoked"]["revokedAt"]

    tx = register(ledger, licensee2, key, b"FR")

    second = tx.return_value
    assert second != first
    assert ledger.deviceIdOf(key.address) == second
    assert tuple(ledger.deviceInfo(second)) == (key.address, licensee2, 0, revoked_at)
    assert ledger.deviceRegistrationNonce(key.address) == 2


def test_registerDevice_reverts_with_old_proof_after_revocation(ledger, licensee):
    key = new_key()
    old_proof = sign_registration(ledger, key, licensee)
    device_id = ledger.registerDevice(key.address, b"GB", old_proof, {"from": licensee}).return_value
    ledger.revokeDevice(device_id, {"from": licensee})

    with brownie.reverts():  # the proof was for nonce 0; the key is now at nonce 1
        ledger.registerDevice(key.address, b"GB", old_proof, {"from": licensee})


def test_registerDevice_reverts_on_zero_address(ledger, licensee):
    with brownie.reverts(err("ZeroAddressDevice()")):
        ledger.registerDevice(ZERO_ADDRESS, b"GB", b"", {"from": licensee})


def test_registerDevice_reverts_on_lower_case_territory(ledger, licensee):
    key = new_key()
    with brownie.reverts(err("InvalidTerritory(bytes2)", b"gb")):
        register(ledger, licensee, key, b"gb")


def test_registerDevice_reverts_on_digit_in_territory(ledger, licensee):
    key = new_key()
    with brownie.reverts(err("InvalidTerritory(bytes2)", b"G1")):
        register(ledger, licensee, key, b"G1")


def test_revokeDevice_records_revocation_time(ledger, licensee):
    key = new_key()
    device_id = register(ledger, licensee, key).return_value

    tx = ledger.revokeDevice(device_id, {"from": licensee})

    ev = tx.events["DeviceRevoked"]
    revoked_at = chain[tx.block_number].timestamp
    assert (ev["deviceId"], ev["device"], ev["revokedAt"]) == (device_id, key.address, revoked_at)
    assert tuple(ledger.deviceInfo(device_id)) == (key.address, licensee, revoked_at, 0)
    assert ledger.deviceIdOf(key.address) == device_id
    assert ledger.deviceCountOf(licensee) == 1


def test_revokeDevice_reverts_for_other_account(ledger, licensee, licensee2):
    device_id = register(ledger, licensee, new_key()).return_value
    register(ledger, licensee2, new_key())

    with brownie.reverts(err("NotDeviceLicensee(uint64,address)", device_id, licensee2.address)):
        ledger.revokeDevice(device_id, {"from": licensee2})


def test_revokeDevice_reverts_for_unknown_device(ledger, licensee):
    device_id = register(ledger, licensee, new_key()).return_value
    unknown = device_id + 1

    with brownie.reverts(err("UnknownDevice(uint64)", unknown)):
        ledger.revokeDevice(unknown, {"from": licensee})


def test_revokeDevice_reverts_when_already_revoked(ledger, licensee):
    device_id = register(ledger, licensee, new_key()).return_value
    ledger.revokeDevice(device_id, {"from": licensee})

    with brownie.reverts(err("UnknownDevice(uint64)", device_id)):
        ledger.revokeDevice(device_id, {"from": licensee})


def test_deviceInfo_is_empty_for_unknown_device(ledger):
    assert tuple(ledger.deviceInfo((7 << 32) | 1)) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0)
    assert ledger.deviceIdOf(new_key().address) == 0
