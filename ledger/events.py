"""Fast decoding of contract logs from their ABIs (no web3 contract objects per log).

``EventDecoder`` maps (contract address, topic0) to the event's layout and decodes a raw log
(as returned by ``eth_getLogs`` or a receipt) into ``DecodedEvent``. Addresses come out
checksummed, ``bytesN`` as bytes, integers as int.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address


def _canonical_type(param: Mapping[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return str(t)


def event_signature(item: Mapping[str, Any]) -> str:
    return f"{item['name']!s}({','.join(_canonical_type(i) for i in item['inputs'])})"


def event_topic(item: Mapping[str, Any]) -> bytes:
    return keccak(text=event_signature(item))


@dataclass(frozen=True)
class EventLayout:
    contract: str  # contract name, e.g. "RoyaltyLedger"
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, type) in topic order
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


@dataclass(frozen=True)
class DecodedEvent:
    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    tx_hash: str


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value, 16)


def _postprocess(typ: str, value: Any) -> Any:
    if typ == "address":
        return to_checksum_address(value)
    if typ == "address[]":
        return [to_checksum_address(v) for v in value]
    return value


def _decode_topic(typ: str, topic: bytes) -> Any:
    if typ == "address":
        return to_checksum_address(topic[12:])
    if typ.startswith(("uint", "int")) or typ == "bool":
        return abi_decode([typ], topic)[0]
    if typ.startswith("bytes") and typ != "bytes":
        return topic[: int(typ[5:])]
    return topic  # dynamic types are indexed as their hash


class EventDecoder:
    """Decodes logs of a set of contracts, keyed by address and topic0."""

    def __init__(self, contracts: Mapping[str, tuple[str, Iterable[Mapping[str, Any]]]]):
        """``contracts``: {name: (address, abi)}."""
        self.layouts: dict[tuple[str, bytes], EventLayout] = {}
        self.addresses: dict[str, str] = {}
        for name, (address, abi) in contracts.items():
            address = to_checksum_address(address)
            self.addresses[name] = address
            for item in abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                indexed = tuple((i["name"], _canonical_type(i)) for i in item["inputs"] if i.get("indexed"))
                data = [(i["name"], _canonical_type(i)) for i in item["inputs"] if not i.get("indexed")]
                self.layouts[(address.lower(), event_topic(item))] = EventLayout(
                    name, item["name"], indexed, tuple(n for n, _ in data), tuple(t for _, t in data)
                )

    def topic(self, contract: str, event: str) -> str:
        for (_address, topic), layout in self.layouts.items():
            if layout.contract == contract and layout.name == event:
                return "0x" + topic.hex()
        raise KeyError(f"{contract} has no event {event}")

    def decode(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        """The decoded event, or None for a log this decoder does not know."""
        topics = log["topics"]
        if not topics:
            return None
        topic0 = _bytes(topics[0])
        layout = self.layouts.get((str(log["address"]).lower(), topic0))
        if layout is None or len(topics) != len(layout.indexed) + 1:
            return None  # e.g. an ERC-20 Transfer under the ERC-721 Transfer topic
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(layout.indexed, topics[1:], strict=True):
            args[name] = _decode_topic(typ, _bytes(topic))
        if layout.data_types:
            values = abi_decode(list(layout.data_types), _bytes(log["data"]))
            for name, typ, value in zip(layout.data_names, layout.data_types, values, strict=True):
                args[name] = _postprocess(typ, value)
        return DecodedEvent(
            layout.contract,
            layout.name,
            args,
            _int(log["blockNumber"]),
            _int(log["logIndex"]),
            _hex(log["transactionHash"]),
        )
