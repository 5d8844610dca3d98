// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ILicensing
/// @notice License terms per work, licenses per (licensee, work, kind), and licensee escrow.
/// @dev A licensee gets a 32-bit index the first time it deposits, buys a license or registers
///      a device; play batches name licensees by that index.
///
///      METERED licenses keep two rate periods: the current one (`ratePerPlay` up to `expiry`)
///      and the one before the latest rate change (`prevRate` up to `prevExpiry`). A play batch
///      is charged at `prevRate` when its toTime <= prevExpiry, else at `ratePerPlay` when
///      toTime <= expiry, else not at all (unlicensed). Buying again at the same rate extends
///      the current period; at another rate the current period becomes the previous one.
///
///      Escrow leaves only after notice: `requestEscrowWithdrawal` then, `ESCROW_NOTICE` seconds
///      later, `withdrawEscrow`. Plays keep being charged from the escrow during the notice.
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

    /// @notice A license was bought or extended. The fee accrued to the work. After it, the
    ///         license charges `prevRate` for batches with toTime <= `prevExpiry`, `ratePerPlay`
    ///         for toTime <= `expiry` (METERED; FLAT: rates and prevExpiry are 0).
    event LicenseBought(
        address indexed licensee,
        uint256 indexed workId,
        LicenseKind kind,
        uint256 fee,
        uint32 ratePerPlay,
        uint64 expiry,
        uint32 prevRate,
        uint64 prevExpiry
    );

    /// @notice Tokens were added to a licensee's escrow.
    event EscrowDeposited(address indexed licensee, address indexed from, uint256 amount);

    /// @notice A licensee asked to take `amount` of escrow back from `availableAt` on (0: cancelled).
    event EscrowWithdrawalRequested(address indexed licensee, uint256 amount, uint64 availableAt);

    /// @notice A licensee took unused escrow back.
    event EscrowWithdrawn(address indexed licensee, address indexed to, uint256 amount);

    /// @notice The work does not offer this kind of license.
    error TermsNotOffered(uint256 workId, LicenseKind kind);
    /// @notice The terms' fee is above what the buyer accepted.
    error FeeAboveMax(uint256 fee, uint256 maxFee);
    /// @notice The terms' rate is above what the buyer accepted.
    error RateAboveMax(uint32 rate, uint32 maxRate);
    /// @notice The license would end before the expiry the buyer asked for at least.
    error ExpiryBelowMin(uint64 expiry, uint64 minExpiry);
    /// @notice Rates per play are at most 2**31 - 1 units (2,147 tokens of 6 decimals).
    error RateTooHigh(uint32 rate);
    /// @notice A license period must last at least one second.
    error ZeroDuration();
    /// @notice An amount of zero was given.
    error ZeroAmount();
    /// @notice The licensee's escrow holds less than asked for.
    error InsufficientEscrow(uint256 available, uint256 requested);
    /// @notice The withdrawal was not requested (or less was): `requested` is what may leave.
    error WithdrawalNotRequested(uint256 requested, uint256 amount);
    /// @notice The notice period of the withdrawal request runs until `availableAt`.
    error WithdrawalNotYetAvailable(uint64 availableAt);
    /// @notice The license would end after the year 2106 (expiries are 32-bit).
    error ExpiryOverflow(uint256 expiry);
    /// @notice No work ids were given.
    error NoWorks();

    /// @notice Sets the terms of one license kind of a work. Work owner only. Existing licenses
    ///         keep the terms they were bought under.
    function setTerms(uint256 workId, LicenseKind kind, uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered)
        external;

    /// @notice Buys (or extends by one period) a license for the caller, paying the fee in the
    ///         settlement token (approve first). `maxFee`, `maxRate` and `minExpiry` protect the
    ///         buyer from a terms change between reading and buying.
    /// @return expiry the license's new expiry
    function buyLicense(uint256 workId, LicenseKind kind, uint256 maxFee, uint32 maxRate, uint64 minExpiry)
        external
        returns (uint64 expiry);

    /// @notice Buys one period of the same kind on many works in one call; every license must
    ///         end at or after `minExpiry`.
    function buyLicenses(
        uint256[] calldata workIds,
        LicenseKind kind,
        uint256 maxTotalFee,
        uint32 maxRate,
        uint64 minExpiry
    ) external;

    /// @notice Adds tokens to the caller's escrow (approve first).
    function deposit(uint256 amount) external;

    /// @notice Adds tokens to the caller's escrow with an ERC-2612 permit of the caller
    ///         (spender: this ledger) instead of an approval. A permit already used (e.g. by a
    ///         front-runner) is fine as long as the allowance suffices.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Adds tokens to another licensee's escrow.
    function depositFor(address licensee, uint256 amount) external;

    /// @notice Asks to withdraw `amount` of escrow after the notice period (replaces any earlier
    ///         request; 0 cancels).
    /// @return availableAt when `withdrawEscrow` may take it
    function requestEscrowWithdrawal(uint256 amount) external returns (uint64 availableAt);

    /// @notice Sends `amount` of the caller's unused escrow to `to`, out of a request whose notice
    ///         has passed.
    function withdrawEscrow(uint256 amount, address to) external;

    /// @notice Seconds between a withdrawal request and the withdrawal.
    function ESCROW_NOTICE() external view returns (uint256);

    /// @notice A licensee's pending withdrawal request (0, 0 when none).
    function escrowWithdrawalOf(address licensee) external view returns (uint256 amount, uint64 availableAt);

    /// @notice The terms of one license kind of a work.
    function termsOf(uint256 workId, LicenseKind kind)
        external
        view
        returns (uint96 fee, uint32 ratePerPlay, uint32 duration, bool offered);

    /// @notice A licensee's license: current rate (METERED; 0 for FLAT) and expiry (0 when none).
    function licenseOf(address licensee, uint256 workId, LicenseKind kind)
        external
        view
        returns (uint32 ratePerPlay, uint64 expiry);

    /// @notice A METERED license's two rate periods (see the contract notes).
    function meteredPeriodsOf(address licensee, uint256 workId)
        external
        view
        returns (uint32 ratePerPlay, uint64 expiry, uint32 prevRate, uint64 prevExpiry);

    /// @notice A licensee's escrow.
    function escrowOf(address licensee) external view returns (uint256);

    /// @notice A licensee's index (0 when it has none yet).
    function licenseeIndexOf(address licensee) external view returns (uint32);

    /// @notice The licensee with an index (zero address when unused).
    function licenseeAt(uint32 licenseeIndex) external view returns (address);
}
