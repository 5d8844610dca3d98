// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {Identifiers} from "../libraries/Identifiers.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title DeviceRegistry
/// @notice Devices registered by licensees with the device key's proof of possession; one
///         storage slot each (key, revocation time, start of validity); per-key nonce bitmaps.
abstract contract DeviceRegistry is LedgerBase, EIP712, IDeviceRegistry {
    bytes32 private constant DEVICE_REGISTRATION_TYPEHASH =
        keccak256("DeviceRegistration(address device,address licensee,uint256 nonce)");
    /// @dev _deviceKeys: registrations counter above the 64-bit latest device id.
    uint256 private constant REGISTRATIONS_SHIFT = 64;

    /// @inheritdoc IDeviceRegistry
    function registerDevice(address device, bytes2 territory, bytes calldata signature)
        external
        returns (uint64 deviceId)
    {
        address licensee = _msgSender();
        return _register(_licenseeIndexOrNew(licensee), licensee, device, territory, signature);
    }

    /// @inheritdoc IDeviceRegistry
    function registerDevices(address[] calldata devices, bytes2[] calldata territories, bytes[] calldata signatures)
        external
    {
        if (devices.length != territories.length) revert DeviceLengthMismatch(devices.length, territories.length);
        if (devices.length != signatures.length) revert DeviceLengthMismatch(devices.length, signatures.length);
        address licensee = _msgSender();
        uint32 index = _licenseeIndexOrNew(licensee);
        for (uint256 i; i < devices.length; ++i) {
            _register(index, licensee, devices[i], territories[i], signatures[i]);
        }
    }

    /// @inheritdoc IDeviceRegistry
    function revokeDevice(uint64 deviceId) external {
        address sender = _msgSender();
        if (_licensees[uint32(deviceId >> 32)] != sender) revert NotDeviceLicensee(deviceId, sender);
        uint256 slot = _devices[deviceId];
        address device = address(uint160(slot));
        (uint256 revoked, uint256 notBefore) = _deviceTimes(slot);
        if (device == address(0) || revoked != 0) revert UnknownDevice(deviceId);
        // Batches ending at or before now stay chargeable; later ones are skipped. The slot is
        // settled: its nonce chunk moves to the archive, where the key's later registrations
        // see it.
        uint64 revokedAt = uint64(block.timestamp);
        _devices[deviceId] = _settleDevice(slot, revokedAt, notBefore);
        emit DeviceRevoked(deviceId, device, revokedAt);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceRegistrationDigest(address device, address licensee) public view returns (bytes32) {
        uint256 nonce = _deviceKeys[device] >> REGISTRATIONS_SHIFT;
        return _hashTypedDataV4(keccak256(abi.encode(DEVICE_REGISTRATION_TYPEHASH, device, licensee, nonce)));
    }

    /// @inheritdoc IDeviceRegistry
    function deviceRegistrationNonce(address device) external view returns (uint256) {
        return _deviceKeys[device] >> REGISTRATIONS_SHIFT;
    }

    /// @inheritdoc IDeviceRegistry
    function deviceIdOf(address device) external view returns (uint64) {
        return uint64(_deviceKeys[device]);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceInfo(uint64 deviceId)
        external
        view
        returns (address device, address licensee, uint64 revokedAt, uint64 notBefore)
    {
        uint256 slot = _devices[deviceId];
        device = address(uint160(slot));
        if (device != address(0)) licensee = _licensees[uint32(deviceId >> 32)];
        (uint256 revoked, uint256 start) = _deviceTimes(slot);
        revokedAt = uint64(revoked);
        notBefore = uint64(start);
    }

    /// @inheritdoc IDeviceRegistry
    function isNonceUsed(uint64 deviceId, uint32 nonce) external view returns (bool) {
        address device = address(uint160(_devices[deviceId]));
        return (_nonceWord(device, nonce >> 8) >> (nonce & 0xff)) & 1 == 1;
    }

    /// @inheritdoc IDeviceRegistry
    function nonceBitmap(address device, uint256 word) external view returns (uint256) {
        return _nonceWord(device, word);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceCountOf(address licensee) external view returns (uint32) {
        uint32 index = _licenseeIndex[licensee];
        return index == 0 ? 0 : _deviceCounts[index];
    }

    function _register(uint32 index, address licensee, address device, bytes2 territory, bytes calldata signature)
        private
        returns (uint64 deviceId)
    {
        if (device == address(0)) revert ZeroAddressDevice();
        if (!Identifiers.isValidTerritory(territory)) revert InvalidTerritory(territory);
        uint256 keyRecord = _deviceKeys[device];
        uint64 previousId = uint64(keyRecord);
        uint256 notBefore;
        if (previousId != 0) {
            (notBefore,) = _deviceTimes(_devices[previousId]);
            if (notBefore == 0) revert DeviceAlreadyRegistered(device);
        }
        // Proof of possession: the key itself agrees to charge this licensee on this ledger.
        (address signer,,) = ECDSA.tryRecoverCalldata(deviceRegistrationDigest(device, licensee), signature);
        if (signer != device) revert BadDeviceSignature(device, signer);
        uint32 number = ++_deviceCounts[index];
        deviceId = (uint64(index) << 32) | number;
        // A key's first registration starts live (nonce chunk 0, none used); a later one
        // starts settled with its notBefore (the key's nonces are in the archive by then).
        _devices[deviceId] = previousId == 0 ? uint160(device) : _settleDevice(uint160(device), 0, notBefore);
        _deviceKeys[device] = (((keyRecord >> REGISTRATIONS_SHIFT) + 1) << REGISTRATIONS_SHIFT) | deviceId;
        emit DeviceRegistered(deviceId, device, licensee, territory);
    }
}
