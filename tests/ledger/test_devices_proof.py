"""ledger.devices: registration proofs as the device script makes them (parsed from its bare and
--json output, checked with the contract's digest), territories, and the public URLs of the
provisioning file. The same proofs against the contract: tests/webapp/test_devices_chain.py."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from ledger import devices
from ledger.config import ConfigError, PortalSettings
from ledger.errors import UserError
from ledger.playbatch import sign_device_registration

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LICENSEE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CHAIN = 31337


@pytest.fixture
def key():
    return Account.create()


def test_device_script_proof_is_accepted_bare_and_as_json(key, device_module):
    sig = device_module.registration_proof(key, CHAIN, LEDGER, LICENSEE, 0)
    assert sig == sign_device_registration(key, CHAIN, LEDGER, LICENSEE, 0)  # the script signs as the library
    bare = devices.parse_proof("0x" + sig.hex() + "\n")
    assert devices.check_proof(bare, key.address.lower(), LICENSEE, CHAIN, LEDGER, 0) == key.address
    doc = {"device": key.address, "licensee": LICENSEE, "ledger": LEDGER, "chainId": CHAIN, "nonce": 0}
    parsed = devices.parse_proof(json.dumps({**doc, "signature": "0x" + sig.hex()}))
    assert (parsed.device, parsed.licensee, parsed.chain_id, parsed.nonce) == (key.address, LICENSEE, CHAIN, 0)
    assert devices.check_proof(parsed, None, LICENSEE, CHAIN, LEDGER, 0) == key.address


def test_a_proof_after_a_revocation_needs_the_next_nonce(key):
    old = devices.parse_proof("0x" + sign_device_registration(key, CHAIN, LEDGER, LICENSEE, 0).hex())
    with pytest.raises(devices.DeviceProofError, match="registration nonce 0, but the ledger expects 1"):
        devices.check_proof(old, key.address, LICENSEE, CHAIN, LEDGER, 1)
    new = devices.parse_proof("0x" + sign_device_registration(key, CHAIN, LEDGER, LICENSEE, 1).hex())
    assert devices.check_proof(new, key.address, LICENSEE, CHAIN, LEDGER, 1) == key.address


def test_high_s_twin_of_a_valid_proof_is_refused_as_the_contract_does(key):
    from ledger.playbatch import SECP256K1_N

    sig = sign_device_registration(key, CHAIN, LEDGER, LICENSEE, 0)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # the other parity
    with pytest.raises(devices.DeviceProofError, match="not device"):
        devices.check_proof(devices.DeviceProof(twin), key.address, LICENSEE, CHAIN, LEDGER, 0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "paste the proof"),
        ("0xzz", "not hexadecimal"),
        ("0x" + "11" * 64, "has 64 bytes"),
        ("{", "not valid JSON"),
        ('{"device": "0x01"}', 'no "signature"'),
        ('{"signature": "0x' + "11" * 65 + '", "device": "0x01"}', "'device' is not an address"),
        ('{"signature": "0x' + "11" * 65 + '", "chainId": "x"}', "must be integers"),
    ],
)
def test_unreadable_proofs_say_what_is_wrong(text, message):
    with pytest.raises(devices.DeviceProofError, match=message.replace("(", r"\(")):
        devices.parse_proof(text)


def test_territories_are_iso_3166_alpha_2():
    assert devices.territory_code(" gb ") == "GB" and devices.territory_name("FR") == "France"
    for bad in ("UK", "XX", "GBR", "G1", ""):
        with pytest.raises(UserError, match="ISO 3166"):
            devices.territory_code(bad)


def test_public_urls_are_read_and_checked():
    env = {"LEDGER_SECRET_KEY": "s" * 40}
    s = PortalSettings.from_env(
        {**env, "LEDGER_PUBLIC_URL": "https://portal.example.org/", "LEDGER_PUBLIC_MQTT_URL": "mqtts://mq:8883"}
    )
    assert (s.public_url, s.public_mqtt_url) == ("https://portal.example.org", "mqtts://mq:8883")
    assert PortalSettings.from_env(env).public_url is None
    with pytest.raises(ConfigError, match="LEDGER_PUBLIC_URL"):
        PortalSettings.from_env({**env, "LEDGER_PUBLIC_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="LEDGER_PUBLIC_MQTT_URL"):
        PortalSettings.from_env({**env, "LEDGER_PUBLIC_MQTT_URL": "https://x"})
    secret = PortalSettings.from_env({**env, "LEDGER_PUBLIC_MQTT_URL": "mqtt://dev:hunter2@mq"})
    assert "hunter2" not in repr(secret)


def test_provisioning_document_is_the_documented_format(key, device_module, tmp_path):
    doc = devices.provisioning(key.address, 7, LICENSEE, CHAIN, LEDGER, "mqtt", "", "mqtt://mq:1883", "venue/plays")
    path = tmp_path / "provisioning.json"
    path.write_text(json.dumps(doc))
    prov = device_module.Provisioning.load(str(path))
    assert (prov.device, prov.device_id, prov.mqtt_url, prov.topic_prefix) == (
        key.address,
        7,
        "mqtt://mq:1883",
        "venue/plays",
    )
    with pytest.raises(UserError):
        devices.provisioning(key.address, 7, LICENSEE, CHAIN, LEDGER, "carrier-pigeon", "", "", "plays")
