// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IDeviceRegistry
/// @notice Devices (their own secp256k1 keys) registered by licensees, with the territory
///         where they play. A device id is `licenseeIndex << 32 | n`, n counting from 1 per
///         licensee, so a batch's device id also names the licensee it charges.
/// @dev A key can be registered once, ever: a revoked device needs a new key, so batches it
///      signed before can never be replayed under a new registration.
interface IDeviceRegistry {
    /// @notice A licensee registered a device.
    /// @param territory ISO 3166-1 alpha-2 code, upper case (e.g. "GB")
    event DeviceRegistered(uint64 indexed deviceId, address indexed device, address indexed licensee, bytes2 territory);

    /// @notice A licensee revoked a device; its batches are skipped from now on.
    event DeviceRevoked(uint64 indexed deviceId, address indexed device);

    /// @notice The device key was registered before.
    error DeviceAlreadyRegistered(address device);
    /// @notice The device address is zero.
    error ZeroAddressDevice();
    /// @notice The territory is not two upper-case letters.
    error InvalidTerritory(bytes2 territory);
    /// @notice Only the licensee that registered the device may do this.
    error NotDeviceLicensee(uint64 deviceId, address account);
    /// @notice No active device has this id.
    error UnknownDevice(uint64 deviceId);
    /// @notice Device and territory arrays differ in length.
    error DeviceLengthMismatch(uint256 devices, uint256 territories);

    /// @notice Registers a device for the caller (who becomes a licensee if it was not).
    function registerDevice(address device, bytes2 territory) external returns (uint64 deviceId);

    /// @notice Registers many devices for the caller.
    function registerDevices(address[] calldata devices, bytes2[] calldata territories) external;

    /// @notice Revokes a device. Its licensee only.
    function revokeDevice(uint64 deviceId) external;

    /// @notice The id a device key was registered under (0 when never).
    function deviceIdOf(address device) external view returns (uint64);

    /// @notice A device's record.
    /// @return device    its address (zero when unknown or revoked)
    /// @return licensee  the licensee it charges
    /// @return revoked   whether it was revoked
    function deviceInfo(uint64 deviceId) external view returns (address device, address licensee, bool revoked);

    /// @notice Whether a nonce can no longer be used by a device (used, or older than the
    ///         64-nonce window below the highest nonce it has used).
    function isNonceUsed(uint64 deviceId, uint32 nonce) external view returns (bool);

    /// @notice How many devices a licensee has registered (active or revoked).
    function deviceCountOf(address licensee) external view returns (uint32);
}
