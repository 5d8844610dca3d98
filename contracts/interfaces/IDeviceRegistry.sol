// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IDeviceRegistry
/// @notice Devices (their own secp256k1 keys) registered by licensees, with the territory
///         where they play. A device id is `licenseeIndex << 32 | n`, n counting from 1 per
///         licensee, so a batch's device id also names the licensee it charges.
/// @dev Registration needs the device key's EIP-712 signature (proof of possession) over
///      `DeviceRegistration(address device,address licensee,uint256 nonce)`, domain
///      "RoyaltyLedger" / "1" / chain id / this ledger, where `nonce` is how many times the key
///      was registered before (`deviceRegistrationNonce`), so an old proof never registers it
///      again. A key has at most one active registration; after a revocation it may be
///      registered again (a new device id). A registration covers batches whose toTime is after
///      the key's previous revocation (`notBefore`) and, once revoked, at or before its
///      revocation time: every batch belongs to at most one registration. Play-batch nonces
///      are per key (not per registration): a nonce is used once per key, ever.
interface IDeviceRegistry {
    /// @notice A licensee registered a device.
    /// @param territory ISO 3166-1 alpha-2 code, upper case (e.g. "GB")
    event DeviceRegistered(uint64 indexed deviceId, address indexed device, address indexed licensee, bytes2 territory);

    /// @notice A licensee revoked a device: batches with toTime after `revokedAt` are skipped.
    event DeviceRevoked(uint64 indexed deviceId, address indexed device, uint64 revokedAt);

    /// @notice The device key has an active registration.
    error DeviceAlreadyRegistered(address device);
    /// @notice The device address is zero.
    error ZeroAddressDevice();
    /// @notice The territory is not two upper-case letters.
    error InvalidTerritory(bytes2 territory);
    /// @notice Only the licensee that registered the device may do this.
    error NotDeviceLicensee(uint64 deviceId, address account);
    /// @notice No active device has this id.
    error UnknownDevice(uint64 deviceId);
    /// @notice Device, territory and signature arrays differ in length.
    error DeviceLengthMismatch(uint256 devices, uint256 territories);
    /// @notice The proof of possession was not signed by the device key.
    error BadDeviceSignature(address device, address signer);

    /// @notice Registers a device for the caller (who becomes a licensee if it was not).
    /// @param signature the device key's EIP-712 signature of DeviceRegistration (65 bytes: r, s, v)
    function registerDevice(address device, bytes2 territory, bytes calldata signature)
        external
        returns (uint64 deviceId);

    /// @notice Registers many devices for the caller.
    function registerDevices(address[] calldata devices, bytes2[] calldata territories, bytes[] calldata signatures)
        external;

    /// @notice Revokes a device from now on. Its licensee only.
    function revokeDevice(uint64 deviceId) external;

    /// @notice The EIP-712 digest a device key signs to be registered by `licensee` now.
    function deviceRegistrationDigest(address device, address licensee) external view returns (bytes32);

    /// @notice How many times a key was registered (the `nonce` of its next proof).
    function deviceRegistrationNonce(address device) external view returns (uint256);

    /// @notice The latest id a device key was registered under (0 when never).
    function deviceIdOf(address device) external view returns (uint64);

    /// @notice A device's record.
    /// @return device     its key (zero when unknown)
    /// @return licensee   the licensee it charges
    /// @return revokedAt  when it was revoked (0: active)
    /// @return notBefore  batches must end after this (the key's previous revocation, or 0)
    function deviceInfo(uint64 deviceId)
        external
        view
        returns (address device, address licensee, uint64 revokedAt, uint64 notBefore);

    /// @notice Whether the key of a device id has used a play-batch nonce.
    function isNonceUsed(uint64 deviceId, uint32 nonce) external view returns (bool);

    /// @notice One 256-nonce word of a key's nonce bitmap: bit (nonce & 255) of word (nonce >> 8).
    function nonceBitmap(address device, uint256 word) external view returns (uint256);

    /// @notice How many devices a licensee has registered (active or revoked).
    function deviceCountOf(address licensee) external view returns (uint32);
}
