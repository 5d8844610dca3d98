"""Device registration against the real contracts on Anvil (the ledger behind its
ERC2771Forwarder), on SQLite and PostgreSQL.

- Bad proofs are refused with a message that says what the proof was made for, before any gas
  is spent (nothing queued, the forwarder nonce unchanged).
- The whole path: a licensee with 0 ETH registers a device from the real output of
  `device.py register-proof --json` through the forwarder, downloads the provisioning file,
  the device (scripts/device.py, unchanged) reports plays over HTTP to this portal, then over
  MQTT (Mosquitto, `ledger.mqtt` consumer) with the MQTT file; the device's page shows each batch
  pending, then charged once relayed and indexed; revocation goes through the forwarder too, and
  the device's next batch is refused, which `device.py status` explains.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid

import pytest
from eth_account import Account
from portal_support import PASSWORD, SECRET, Portal, csrf_of, make_app
from web3 import Web3
from werkzeug.serving import make_server

from ledger import accounts, devices, gasless
from ledger.chain import LedgerClient, LicenseKind, deploy
from ledger.gasless import GaslessRelayer
from ledger.ingest import IngestContext
from ledger.mqtt import MqttIngest
from tests.support import BUILD_DIR, DEVICE_SCRIPT, MQTT_HOST, MQTT_PORT, ensure_compiled, running_anvil
from webapp.money import usd

RATE = 1_000  # $0.001 per play
_users = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def chain():
    ensure_compiled()
    with running_anvil() as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        admin = w3.eth.accounts[0]
        deployment = deploy(w3, admin, BUILD_DIR)
        client = LedgerClient(w3, deployment, admin)
        work = client.register_work(title="Blue Hour")
        client.set_split(work, [Account.create().address], [10_000], current=([], []))
        client.set_terms(work, LicenseKind.METERED, 0, RATE, 365 * 86400)
        yield w3, deployment, client, work


@pytest.fixture
def portal(chain, engine):
    """The portal app on this chain: the gasless relayer pays from the node's second account."""
    w3, deployment, _, _ = chain
    app = make_app(engine)
    app.config["GASLESS_RELAYER"] = GaslessRelayer(w3, deployment, w3.eth.accounts[1], engine, 3_000_000)
    app.config["INGEST_CONTEXT"] = IngestContext.create(w3, deployment, engine, ttl=0, negative_ttl=0, nonce_ttl=0)
    return app


def _licensee(engine, app):
    user = accounts.create_user(engine, f"venue{next(_users)}", PASSWORD, ["licensee"], SECRET)
    portal = Portal(app)
    assert portal.login(user.username).status_code == 302
    return user, portal


def _device(tmp_path, *args):
    proc = subprocess.run(
        [sys.executable, str(DEVICE_SCRIPT), "--state", str(tmp_path), "--quiet", "--timeout", "10", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 3), proc.stderr
    return proc


def _register(portal, proof_text=None, device="", upload=None, name="Bar", territory="GB"):
    token = csrf_of(portal.get("/licensee/devices/register").data)
    data = {"csrf_token": token, "proof": proof_text or "", "device": device, "name": name, "territory": territory}
    if upload is not None:
        import io

        data["proof_file"] = (io.BytesIO(upload.encode()), "proof.json")
    return portal.client.post("/licensee/devices/register", data=data, content_type="multipart/form-data")


def _page(response) -> str:
    return re.sub(r"\s+", " ", response.data.decode().replace("&#34;", '"').replace("&#39;", "'"))


def test_bad_proofs_are_refused_before_any_gas(chain, engine, portal, tmp_path, device_module):
    w3, deployment, _, _ = chain
    user, lic = _licensee(engine, portal)
    key = Account.create()
    ledger, chain_id = deployment.ledger.address, deployment.chain_id
    other = Account.create().address

    def proof(licensee=user.address, ledger_=ledger, chain_=chain_id, nonce=0, signer=key):
        return "0x" + device_module.registration_proof(signer, chain_, ledger_, licensee, nonce).hex()

    def as_json(signature, **over):
        doc = {"device": key.address, "licensee": user.address, "ledger": ledger, "chainId": chain_id, "nonce": 0}
        return json.dumps({**doc, **over, "signature": signature})

    cases = [
        (dict(upload=as_json(proof(licensee=other), licensee=other)), f"made for licensee {other}, but you are"),
        (dict(proof_text=proof(licensee=other), device=key.address), f"not device {key.address}'s proof for you"),
        (dict(upload=as_json(proof(ledger_=other), ledger=other)), f"made for ledger {other}, but this portal"),
        (dict(upload=as_json(proof(chain_=1), chainId=1)), f"made for chain 1, but this portal's chain is {chain_id}"),
        (dict(proof_text=proof(chain_=1), device=key.address), "it was made for another licensee, ledger, chain"),
        (dict(upload=as_json(proof(nonce=1), nonce=1)), "made with registration nonce 1"),
        (
            dict(proof_text=proof(nonce=2), device=key.address),
            "made with registration nonce 2, but the ledger expects 0",
        ),
        (dict(proof_text=proof(signer=Account.create()), device=key.address), "not device"),
        (dict(upload=as_json(proof()), device=other), f"the proof is for device {key.address}, not {other}"),
    ]
    for kwargs, message in cases:
        response = _register(lic, **kwargs)
        assert response.status_code == 400, kwargs
        assert message in _page(response), (message, _page(response)[-3000:])
        assert f"--licensee {user.address} --ledger {ledger} --chain-id {chain_id}" in _page(response) or (
            "the proof is for device" in message
        )
    assert gasless.actions_of(engine, user.id) == [] and devices.portal_rows(engine, user.id) == []
    assert portal.config["GASLESS_RELAYER"].forwarder.functions.nonces(user.address).call() == 0
    assert gasless.gas_spent(engine, user.id) == 0


def test_a_key_registered_by_another_licensee_is_refused(chain, engine, portal, device_module):
    w3, deployment, _, _ = chain
    user, lic = _licensee(engine, portal)
    key = Account.create()
    rival = LedgerClient(w3, deployment, w3.eth.accounts[3])
    rival.register_device(key.address, "FR", rival.device_proof(key))
    signature = device_module.registration_proof(key, deployment.chain_id, deployment.ledger.address, user.address, 1)
    response = _register(lic, "0x" + signature.hex(), key.address)
    assert response.status_code == 400
    assert "registered already (by another licensee" in _page(response)
    assert gasless.actions_of(engine, user.id) == []


def test_zero_eth_licensee_registers_a_device_sees_batches_pending_then_charged_and_revokes(
    chain, engine, portal, tmp_path
):
    from ledger.indexer import Indexer
    from ledger.relayer import Relayer

    w3, deployment, admin, work = chain
    server = make_server("127.0.0.1", 0, portal, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = [server.shutdown]
    try:
        portal.config["PORTAL_SETTINGS"] = type(portal.config["PORTAL_SETTINGS"])(
            **{**portal.config["PORTAL_SETTINGS"].__dict__, "public_url": f"http://127.0.0.1:{server.server_port}"}
        )
        user, lic = _licensee(engine, portal)
        # The licensee's escrow and license (the licensee pages' part), then its ETH is taken away.
        venue = LedgerClient(w3, deployment, accounts.custodial_account(user, SECRET))
        w3.provider.make_request("anvil_setBalance", [user.address, hex(10**18)])
        admin.mint(user.address, 10 * 10**6)
        venue.deposit(5 * 10**6)
        venue.buy_license(work, LicenseKind.METERED)
        w3.provider.make_request("anvil_setBalance", [user.address, "0x0"])
        assert w3.eth.get_balance(user.address) == 0

        register_page = _page(lic.get("/licensee/devices/register"))  # the command a new device needs
        assert (
            f"--licensee {user.address} --ledger {deployment.ledger.address} --chain-id {deployment.chain_id} --json"
            in register_page
        )
        state = tmp_path / "device"
        address = _device(state, "keygen").stdout.strip()
        proof = _device(
            state,
            "register-proof",
            "--licensee",
            user.address,
            "--ledger",
            deployment.ledger.address,
            "--chain-id",
            deployment.chain_id,
            "--json",
        ).stdout
        response = _register(lic, upload=proof, name="Bar", territory="gb")
        assert response.status_code == 302, _page(response)[-2000:]
        (action,) = gasless.actions_of(engine, user.id)
        assert (action.kind, action.status) == ("register_device", "confirmed")
        device_id = LedgerClient(w3, deployment).device_id_of(address)
        assert device_id >> 32 == LedgerClient(w3, deployment).licensee_index_of(user.address)
        assert LedgerClient(w3, deployment).device_info(device_id)[1] == user.address  # registered as the licensee
        assert w3.eth.get_balance(user.address) == 0  # the forwarder's relayer paid
        page = lic.get(f"/licensee/devices/{address}").data.decode()
        assert ">active<" in page and "download-http" in page and "none yet" in page

        # The provisioning file, saved as is; the device reports plays to this server.
        prov = lic.get(f"/licensee/devices/{address}/provisioning.json")
        (state / "provisioning.json").write_bytes(prov.data)
        assert prov.get_json()["deviceId"] == str(device_id)
        after = w3.eth.get_block("latest")["timestamp"] + 1  # Anvil's clock may run ahead of the wall clock
        _device(state, "play", "--work", work, "--count", 5, "--at", after)
        _device(state, "flush")
        status = json.loads(_device(state, "status", "--json").stdout)
        assert status["lastAck"]["nonce"] == 0 and status["spooledBatches"] == 0

        page = lic.get(f"/licensee/devices/{address}").data.decode()
        assert re.search(r'id="pending-count">1<', page) and "batch #0" in page
        overview = lic.get("/licensee/devices/").data.decode()
        assert 'id="waiting"' in overview and address[:10] in overview

        relayer = Account.create()
        w3.provider.make_request("anvil_setBalance", [relayer.address, hex(10**18)])
        Relayer(w3, deployment, relayer, engine).run(once=True)
        Indexer(engine, w3, deployment, progress=False).run()
        page = _page(lic.get(f"/licensee/devices/{address}"))
        assert re.search(r'id="pending-count">0<', page)
        assert ">charged<" in page
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
        assert f"#{work} Blue Hour 5 5 {usd(5 * RATE)} 0" in text, text[-1500:]  # charged, nothing pending
        assert "Nothing is waiting" in lic.get("/licensee/devices/").data.decode()

        # The same device over MQTT: the MQTT provisioning file names this server's broker and topics.
        prefix = f"test-{uuid.uuid4().hex[:12]}/plays"
        portal.config["LEDGER_SETTINGS"] = portal.config["LEDGER_SETTINGS"].with_(
            mqtt_url=f"mqtt://ingest:secret@{MQTT_HOST}:{MQTT_PORT}", mqtt_topic_prefix=prefix
        )
        consumer = MqttIngest(
            portal.config["INGEST_CONTEXT"],
            f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            topic_prefix=prefix,
            client_id=f"devices-test-{uuid.uuid4().hex[:10]}",
        )
        consumer.start()
        stop.append(consumer.stop)
        prov = lic.get(f"/licensee/devices/{address}/provisioning.json?transport=mqtt")
        (state / "provisioning.json").write_bytes(prov.data)
        assert prov.get_json()["mqttUrl"] == f"mqtt://{MQTT_HOST}:{MQTT_PORT}"  # the server's credentials stay
        _device(state, "play", "--work", work, "--count", 3, "--at", w3.eth.get_block("latest")["timestamp"] + 1)
        _device(state, "flush")
        status = json.loads(_device(state, "status", "--json").stdout)
        assert status["lastAck"]["nonce"] == 1 and status["spooledBatches"] == 0
        assert status["server"]["transport"] == "mqtt" and prefix in status["server"]["url"]
        assert re.search(r'id="pending-count">1<', lic.get(f"/licensee/devices/{address}").data.decode())
        Relayer(w3, deployment, relayer, engine).run(once=True)
        Indexer(engine, w3, deployment, progress=False).run()
        page = _page(lic.get(f"/licensee/devices/{address}"))
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
        assert f"#{work} Blue Hour 8 8 {usd(8 * RATE)} 0" in text, text[-1500:]

        # Revocation: gasless too; the device's next batch is refused and `status` says why.
        token = csrf_of(page)
        assert lic.client.post(f"/licensee/devices/{address}/revoke", data={"csrf_token": token}).status_code == 302
        revoke = gasless.actions_of(engine, user.id)[0]
        assert (revoke.kind, revoke.status) == ("revoke_device", "confirmed")
        revoked_at = LedgerClient(w3, deployment).device_info(device_id)[2]
        assert revoked_at > 0
        assert w3.eth.get_balance(user.address) == 0
        Indexer(engine, w3, deployment, progress=False).run()
        page = lic.get(f"/licensee/devices/{address}").data.decode()
        assert ">revoked<" in page and 'id="revoke"' not in page and "download-http" not in page
        assert lic.get(f"/licensee/devices/{address}/provisioning.json").status_code == 409
        _device(state, "play", "--work", work, "--at", revoked_at + 1)  # plays before it stay chargeable
        _device(state, "flush")
        text = _device(state, "status").stdout
        assert "403 device_revoked" in text and "register the key again" in text  # the MQTT ack's refusal
    finally:
        for fn in reversed(stop):
            fn()
