// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ILicensing
/// @notice License terms per work, licenses per (licensee, work, kind), and licensee escrow.
/// @dev A licensee gets a 32-bit index the first time it deposits, buys a license or registers
///      a device; play batches name licensees by that index.
interface ILicensing {
    /// @notice FLAT: a one-off fee for a period (sync, broadcast). METERED: a per-play rate
    ///         charged from the licensee's escrow (venues, devices), with an optional
    ///         activation fee per period.
    enum LicenseKind {
        FLAT,
        METERED
    }

    /// @notice The owner of a work set the terms of one license kind.
    event TermsSet(
        uint256 indexed workId, LicenseKind indexed kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered
    );

    /// @notice An address became a licensee with this index.
    event LicenseeRegistered(address indexed licensee, uint32 indexed licenseeIndex);

    /// @notice A license was bought or extended. The fee accrued to the work; `expiry` is the
    ///         new end of the license (unix seconds); a METERED license charges `ratePerPlay`
    ///         for plays whose batch ends at or before `expiry`.
    event LicenseBought(
        address indexed licensee, uint256 indexed workId, LicenseKind kind, uint256 fee, uint32 ratePerPlay, uint64 expiry
    );

    /// @notice Tokens were added to a licensee's escrow.
    event EscrowDeposited(address indexed licensee, address indexed from, uint256 amount);

    /// @notice A licensee took unused escrow back.
    event EscrowWithdrawn(address indexed licensee, address indexed to, uint256 amount);

    /// @notice The work does not offer this kind of license.
    error TermsNotOffered(uint256 workId, LicenseKind kind);
    /// @notice The terms' fee is above what the buyer accepted.
    error FeeAboveMax(uint256 fee, uint256 maxFee);
    /// @notice The terms' rate is above what the buyer accepted.
    error RateAboveMax(uint32 rate, uint32 maxRate);
    /// @notice A license period must last at least one second.
    error ZeroDuration();
    /// @notice An amount of zero was given.
    error ZeroAmount();
    /// @notice The licensee's escrow holds less than asked for.
    error InsufficientEscrow(uint256 available, uint256 requested);
    /// @notice The license would end after the year 2106 (expiries are 32-bit).
    error ExpiryOverflow(uint256 expiry);
    /// @notice No work ids were given.
    error NoWorks();

    /// @notice Sets the terms of one license kind of a work. Work owner only. Existing licenses
    ///         keep the terms they were bought under.
    function setTerms(uint256 workId, LicenseKind kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
        external;

    /// @notice Buys (or extends by one period) a license for the caller, paying the fee in the
    ///         settlement token (approve first). `maxFee` / `maxRate` protect the buyer from a
    ///         terms change between reading and buying.
    /// @return expiry the license's new expiry
    function buyLicense(uint256 workId, LicenseKind kind, uint256 maxFee, uint32 maxRate)
        external
        returns (uint64 expiry);

    /// @notice Buys one period of the same kind on many works in one call.
    function buyLicenses(uint256[] calldata workIds, LicenseKind kind, uint256 maxTotalFee, uint32 maxRate) external;

    /// @notice Adds tokens to the caller's escrow (approve first).
    function deposit(uint256 amount) external;

    /// @notice Adds tokens to another licensee's escrow.
    function depositFor(address licensee, uint256 amount) external;

    /// @notice Sends `amount` of the caller's unused escrow to `to`.
    function withdrawEscrow(uint256 amount, address to) external;

    /// @notice The terms of one license kind of a work.
    function termsOf(uint256 workId, LicenseKind kind)
        external
        view
        returns (uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered);

    /// @notice A licensee's license: rate (METERED; 0 for FLAT) and expiry (0 when none).
    function licenseOf(address licensee, uint256 workId, LicenseKind kind)
        external
        view
        returns (uint32 ratePerPlay, uint64 expiry);

    /// @notice A licensee's escrow.
    function escrowOf(address licensee) external view returns (uint256);

    /// @notice A licensee's index (0 when it has none yet).
    function licenseeIndexOf(address licensee) external view returns (uint32);

    /// @notice The licensee with an index (zero address when unused).
    function licenseeAt(uint32 licenseeIndex) external view returns (address);
}
