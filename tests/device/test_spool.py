"""The device spool: plays and batches survive, nonces are fresh, keys are private."""

import json
import os
import stat

import pytest
from eth_account import Account

from ledger import playbatch

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def device(tmp_path, device_module):
    address = device_module.keygen(str(tmp_path / "key.json"))
    (tmp_path / "provisioning.json").write_text(
        json.dumps(
            {
                "device": address,
                "deviceId": str((1 << 32) | 1),
                "licensee": "0x" + "11" * 20,
                "transport": "http",
                "endpoint": "http://127.0.0.1:9/api/v1/batches",
                "mqttUrl": "",
                "chainId": 31337,
                "ledger": LEDGER,
            }
        )
    )
    return device_module.Device(str(tmp_path), quiet=True)


def test_keygen_writes_key_file_readable_by_owner_only(tmp_path, device_module):
    address = device_module.keygen(str(tmp_path / "k.json"))
    mode = stat.S_IMODE(os.stat(tmp_path / "k.json").st_mode)
    assert mode == 0o600
    assert device_module.load_key(str(tmp_path / "k.json")).address == address


def test_keygen_refuses_to_overwrite_a_key(tmp_path, device_module):
    device_module.keygen(str(tmp_path / "k.json"))
    with pytest.raises(device_module.DeviceError):
        device_module.keygen(str(tmp_path / "k.json"))


def test_seal_splits_by_size_and_uses_fresh_nonces(device):
    for i in range(25):
        device.spool.add_play(1 + i % 3, ts=1000 + i)
    assert device.spool.seal(device.account, device.prov, batch_size=10) == 3
    rows = device.spool.pending_batches()
    assert [r[0] for r in rows] == [0, 1, 2]
    assert [r[2] for r in rows] == [10, 10, 5]
    assert device.spool.unbatched()[0] == 0


def test_sealed_batch_verifies_with_ledger_codec(device):
    device.spool.add_play(5, ts=100)
    device.spool.add_play(2, ts=130)
    device.spool.add_play(5, ts=120)
    device.spool.seal(device.account, device.prov, 1000)
    ((nonce, body, plays),) = device.spool.pending_batches()
    data = json.loads(body)
    entries = bytes.fromhex(data["entries"][2:])
    assert playbatch.decode_entries(entries) == [(2, 1), (5, 2)]
    assert (data["fromTime"], data["toTime"], plays) == (100, 130, 3)
    batch = playbatch.SignedBatch(data["device"], nonce, 100, 130, entries, bytes.fromhex(data["signature"][2:]))
    assert batch.recover(31337, LEDGER) == device.account.address


def test_nonce_counter_survives_reopening(tmp_path, device, device_module):
    device.spool.add_play(1, ts=1)
    device.spool.seal(device.account, device.prov, 1000)
    device.spool.acknowledge(0)
    again = device_module.Device(str(tmp_path), quiet=True)
    again.spool.add_play(1, ts=2)
    again.spool.seal(again.account, again.prov, 1000)
    assert [r[0] for r in again.spool.pending_batches()] == [1]


def test_batch_closes_at_1024_distinct_works(device):
    for work in range(1, 1100):
        device.spool.add_play(work, ts=5)
    device.spool.seal(device.account, device.prov, 5000)
    assert [r[2] for r in device.spool.pending_batches()] == [1024, 75]


def test_unreachable_server_keeps_batches_spooled(device):
    device.spool.add_play(1, ts=1)
    device.spool.seal(device.account, device.prov, 1000)
    acked, rejected, left = device.deliver()
    assert (acked, rejected, left) == (0, 0, 1)
    assert device.spool.counts()["spooledBatches"] == 1


@pytest.mark.parametrize(
    "status,kind",
    [(202, "ack"), (200, "ack"), (409, "rejected"), (422, "rejected"), (429, "retry"), (500, "retry"), (503, "retry")],
)
def test_server_answers_map_to_spool_actions(device_module, status, kind):
    assert device_module.classify(status, {"error": {"code": "x", "message": "y"}}).kind == kind


def test_provisioning_for_another_key_is_refused(tmp_path, device, device_module):
    data = json.loads((tmp_path / "provisioning.json").read_text())
    data["device"] = Account.create().address
    (tmp_path / "provisioning.json").write_text(json.dumps(data))
    fresh = device_module.Device(str(tmp_path), quiet=True)
    with pytest.raises(device_module.DeviceError):
        fresh.prov
