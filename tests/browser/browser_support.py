"""What the browser tests do in a page: sign up, fill the registration form, bring a wallet."""

from __future__ import annotations

import json
from typing import Any

PASSWORD = "a long browser password"


def sign_up(p: Any, username: str, roles: list[str]) -> None:
    page = p.page
    page.goto("/signup")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    for role in ("artist", "label", "licensee"):
        box = page.locator(f"input[name=roles][value={role}]")
        if (role in roles) != box.is_checked():
            box.click()
    page.click("#submit")
    page.wait_for_load_state()


def fill_work(page: Any, iswc: str, artist: str, label: str) -> None:
    page.fill("#title", "Night Drive")
    page.fill("#isrc", "US-SKG-26-00042")
    page.fill("#iswc", iswc)
    page.fill("#payees-0-payee", artist)
    page.fill("#payees-0-bps", "7000")
    page.fill("#payees-1-payee", label)
    page.fill("#payees-1-bps", "3000")
    if not page.locator("#metered").is_checked():
        page.click("#metered")
    page.fill("#metered_rate", "0.001")


def install_wallet(p: Any, account: Any) -> None:
    """A browser wallet (EIP-1193 window.ethereum) whose signatures are made in Python with
    eth-account, as MetaMask would make them."""
    from eth_account.messages import encode_defunct, encode_typed_data

    def sign(method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method == "personal_sign":
            message = encode_defunct(text=params[0])
        elif method == "eth_signTypedData_v4":
            message = encode_typed_data(full_message=json.loads(params[1]))
        else:
            raise ValueError(f"unsupported wallet method {method}")
        return "0x" + account.sign_message(message).signature.hex().removeprefix("0x")

    p.page.expose_function("pyWalletSign", sign)
    p.context.add_init_script(f"""
        window.ethereum = {{
          request: async ({{method, params}}) => {{
            if (method === "eth_requestAccounts") return ["{account.address.lower()}"];
            if (method === "eth_chainId") return "0x7a69";
            return await window.pyWalletSign(method, JSON.stringify(params || []));
          }},
        }};""")


def device_cmd(state: Any, *args: Any, timeout: float = 120) -> str:
    """``scripts/device.py --state STATE ARGS`` as a device owner runs it; its stdout."""
    import subprocess
    import sys

    from tests.support import DEVICE_SCRIPT

    proc = subprocess.run(
        [sys.executable, str(DEVICE_SCRIPT), "--state", str(state), "--quiet", "--timeout", "10", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"device.py {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout
