// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {Identifiers} from "../libraries/Identifiers.sol";
import {LedgerBase} from "./LedgerBase.sol";

/// @title DeviceRegistry
/// @notice Devices registered by licensees, one storage slot each (address, nonce window).
abstract contract DeviceRegistry is LedgerBase, IDeviceRegistry {
    /// @dev Nonces at most this far below the highest used one can still be used once.
    uint256 internal constant NONCE_WINDOW = 64;

    /// @inheritdoc IDeviceRegistry
    function registerDevice(address device, bytes2 territory) external returns (uint64 deviceId) {
        return _register(_licenseeIndexOrNew(msg.sender), device, territory);
    }

    /// @inheritdoc IDeviceRegistry
    function registerDevices(address[] calldata devices, bytes2[] calldata territories) external {
        if (devices.length != territories.length) revert DeviceLengthMismatch(devices.length, territories.length);
        uint32 index = _licenseeIndexOrNew(msg.sender);
        for (uint256 i; i < devices.length; ++i) {
            _register(index, devices[i], territories[i]);
        }
    }

    /// @inheritdoc IDeviceRegistry
    function revokeDevice(uint64 deviceId) external {
        if (_licensees[uint32(deviceId >> 32)] != msg.sender) revert NotDeviceLicensee(deviceId, msg.sender);
        uint256 slot = _devices[deviceId];
        address device = address(uint160(slot));
        if (device == address(0)) revert UnknownDevice(deviceId);
        // Keep the nonce window (isNonceUsed stays truthful); clear the address so batches skip.
        _devices[deviceId] = slot & ~ADDRESS_MASK;
        _revoked[deviceId] = true;
        emit DeviceRevoked(deviceId, device);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceIdOf(address device) external view returns (uint64) {
        return _deviceIds[device];
    }

    /// @inheritdoc IDeviceRegistry
    function deviceInfo(uint64 deviceId) external view returns (address device, address licensee, bool revoked) {
        device = address(uint160(_devices[deviceId]));
        revoked = _revoked[deviceId];
        if (device != address(0) || revoked) licensee = _licensees[uint32(deviceId >> 32)];
    }

    /// @inheritdoc IDeviceRegistry
    function isNonceUsed(uint64 deviceId, uint32 nonce) external view returns (bool) {
        uint256 slot = _devices[deviceId];
        uint256 top = (slot >> 160) & 0xffffffff;
        if (nonce > top) return false;
        uint256 distance = top - nonce;
        return distance >= NONCE_WINDOW || (slot >> (192 + distance)) & 1 == 1;
    }

    /// @inheritdoc IDeviceRegistry
    function deviceCountOf(address licensee) external view returns (uint32) {
        uint32 index = _licenseeIndex[licensee];
        return index == 0 ? 0 : _deviceCounts[index];
    }

    function _register(uint32 index, address device, bytes2 territory) private returns (uint64 deviceId) {
        if (device == address(0)) revert ZeroAddressDevice();
        if (!Identifiers.isValidTerritory(territory)) revert InvalidTerritory(territory);
        if (_deviceIds[device] != 0) revert DeviceAlreadyRegistered(device);
        uint32 number = ++_deviceCounts[index];
        deviceId = (uint64(index) << 32) | number;
        _devices[deviceId] = uint160(device);
        _deviceIds[device] = deviceId;
        emit DeviceRegistered(deviceId, device, _licensees[index], territory);
    }
}
