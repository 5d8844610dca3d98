"""DeviceRegistry: device keys registered by licensees, with territory; revocable."""
import brownie
from brownie import ZERO_ADDRESS

from contract_helpers import err, new_key


def test_registerDevice_registers_key_under_caller(ledger, licensee):
    key = new_key()

    tx = ledger.registerDevice(key.address, b"GB", {"from": licensee})

    index = ledger.licenseeIndexOf(licensee)
    device_id = (index << 32) | 1
    ev = tx.events["DeviceRegistered"]
    assert (ev["deviceId"], ev["device"], ev["licensee"], bytes(ev["territory"])) == (
        device_id, key.address, licensee, b"GB")
    assert tx.return_value == device_id
    assert index == 1 and tx.events["LicenseeRegistered"]["licenseeIndex"] == 1
    assert ledger.deviceIdOf(key.address) == device_id
    assert tuple(ledger.deviceInfo(device_id)) == (key.address, licensee, False)
    assert ledger.deviceCountOf(licensee) == 1


def test_registerDevices_numbers_devices_per_licensee(ledger, licensee, licensee2):
    keys = [new_key() for _ in range(3)]
    ledger.registerDevice(new_key().address, b"US", {"from": licensee2})

    tx = ledger.registerDevices([k.address for k in keys], [b"GB", b"FR", b"DE"], {"from": licensee})

    index = ledger.licenseeIndexOf(licensee)
    assert index == 2
    assert [e["deviceId"] for e in tx.events["DeviceRegistered"]] == [(index << 32) | n for n in (1, 2, 3)]
    assert [bytes(e["territory"]) for e in tx.events["DeviceRegistered"]] == [b"GB", b"FR", b"DE"]
    assert ledger.deviceCountOf(licensee) == 3
    assert ledger.deviceCountOf(licensee2) == 1


def test_registerDevices_reverts_on_length_mismatch(ledger, licensee):
    with brownie.reverts(err("DeviceLengthMismatch(uint256,uint256)", 2, 1)):
        ledger.registerDevices([new_key().address, new_key().address], [b"GB"], {"from": licensee})


def test_registerDevice_reverts_when_key_already_registered(ledger, licensee, licensee2):
    key = new_key()
    ledger.registerDevice(key.address, b"GB", {"from": licensee})

    with brownie.reverts(err("DeviceAlreadyRegistered(address)", key.address)):
        ledger.registerDevice(key.address, b"FR", {"from": licensee2})


def test_registerDevice_reverts_for_revoked_key(ledger, licensee):
    key = new_key()
    device_id = ledger.registerDevice(key.address, b"GB", {"from": licensee}).return_value
    ledger.revokeDevice(device_id, {"from": licensee})

    with brownie.reverts(err("DeviceAlreadyRegistered(address)", key.address)):
        ledger.registerDevice(key.address, b"GB", {"from": licensee})


def test_registerDevice_reverts_on_zero_address(ledger, licensee):
    with brownie.reverts(err("ZeroAddressDevice()")):
        ledger.registerDevice(ZERO_ADDRESS, b"GB", {"from": licensee})


def test_registerDevice_reverts_on_lower_case_territory(ledger, licensee):
    with brownie.reverts(err("InvalidTerritory(bytes2)", b"gb")):
        ledger.registerDevice(new_key().address, b"gb", {"from": licensee})


def test_registerDevice_reverts_on_digit_in_territory(ledger, licensee):
    with brownie.reverts(err("InvalidTerritory(bytes2)", b"G1")):
        ledger.registerDevice(new_key().address, b"G1", {"from": licensee})


def test_revokeDevice_marks_device_revoked(ledger, licensee):
    key = new_key()
    device_id = ledger.registerDevice(key.address, b"GB", {"from": licensee}).return_value

    tx = ledger.revokeDevice(device_id, {"from": licensee})

    ev = tx.events["DeviceRevoked"]
    assert (ev["deviceId"], ev["device"]) == (device_id, key.address)
    assert tuple(ledger.deviceInfo(device_id)) == (ZERO_ADDRESS, licensee, True)
    assert ledger.deviceIdOf(key.address) == device_id
    assert ledger.deviceCountOf(licensee) == 1


def test_revokeDevice_reverts_for_other_account(ledger, licensee, licensee2):
    device_id = ledger.registerDevice(new_key().address, b"GB", {"from": licensee}).return_value
    ledger.registerDevice(new_key().address, b"GB", {"from": licensee2})

    with brownie.reverts(err("NotDeviceLicensee(uint64,address)", device_id, licensee2.address)):
        ledger.revokeDevice(device_id, {"from": licensee2})


def test_revokeDevice_reverts_for_unknown_device(ledger, licensee):
    device_id = ledger.registerDevice(new_key().address, b"GB", {"from": licensee}).return_value
    unknown = device_id + 1

    with brownie.reverts(err("UnknownDevice(uint64)", unknown)):
        ledger.revokeDevice(unknown, {"from": licensee})


def test_revokeDevice_reverts_when_already_revoked(ledger, licensee):
    device_id = ledger.registerDevice(new_key().address, b"GB", {"from": licensee}).return_value
    ledger.revokeDevice(device_id, {"from": licensee})

    with brownie.reverts(err("UnknownDevice(uint64)", device_id)):
        ledger.revokeDevice(device_id, {"from": licensee})


def test_deviceInfo_is_empty_for_unknown_device(ledger):
    assert tuple(ledger.deviceInfo((7 << 32) | 1)) == (ZERO_ADDRESS, ZERO_ADDRESS, False)
    assert ledger.deviceIdOf(new_key().address) == 0
