// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";

/// @title OracleRouter
/// @notice Verifies k-of-n EIP-712 signed reports, keeps the latest report per subject and forwards
///         every accepted report to the subject's subscribers.
/// @dev Signatures are EIP-2098 compact (r ‖ yParityAndS, 64 bytes each), concatenated, ordered by
///      strictly ascending signer address: the ordering makes "distinct signers" a single comparison.
///      Gas matters on the hot path (`submit`): the latest epoch, observedAt, value, kind and the
///      subscriber count share one storage slot, the report hash a second one; the model allowlist
///      costs one more cold read.
///
///      Governance behind one timelock, `modelDelay` (the name is historic: it delays every change
///      below, not only models). Whatever could make the router accept a report it would have refused
///      is scheduled by the owner and takes effect only `modelDelay` seconds later, when anyone may
///      activate it, so insured parties and other signers see it coming: approving or replacing a model
///      (`scheduleModel` / `activateModel`), adding a signer (`scheduleAddSigner`), changing the
///      threshold (`scheduleThreshold`) and approving a consumer (`scheduleConsumerApproval`); the last
///      three are activated with `activateGovernance` and listed by `pendingGovernance`. The owner may
///      cancel a scheduled change. What can only stop reports or subscriptions is immediate: revoking a
///      model, removing a signer (never below `threshold` signers) and withdrawing a consumer approval.
///      While `modelDelay` is 0 (a fresh router, before `setModelDelay` arms the timelock) a scheduled
///      change is active at once: deployment sets the router up this way, then arms the delay.
///
///      Epochs rise strictly per subject, with one exception, corrections: a drought epoch is month index
///      × 1000 + revision, and a drought report for an earlier month than the latest's is accepted as a
///      correction when its epoch is above every correction already accepted for that month
///      (`correctionEpoch`). It is forwarded and emitted like any report but leaves `latest` alone. The
///      router does not remember which revision a month had when a later month superseded it (that
///      would cost a new storage slot on every month change), so the first correction of a month may be
///      a re-delivery of a revision subscribers already saw: subscribers keep the highest revision per
///      (subject, month) and ignore anything not above it (DroughtInsurancePool does).
///
///      Epochs are bounded by the period clock, as the signers bound them (`oracle.reports.max_epoch`),
///      so no quorum can sign an epoch so far ahead that every honest report after it is stale.
contract OracleRouter is IOracleRouter, Ownable, EIP712 {
    /// @dev Must equal `oracle.reports.REPORT_TYPE`; a Python test compares them.
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "Report(bytes32 subject,uint8 kind,int256 value,uint64 epoch,uint64 observedAt,bytes32 inputsRoot,bytes32 modelId)"
    );

    /// @notice Most signers the router accepts; keeps verification cost bounded.
    uint256 public constant MAX_SIGNERS = 32;
    /// @notice Most subscribers per subject, so forwarding one report has a bounded cost.
    uint256 public constant MAX_SUBSCRIBERS = 8;
    /// @notice Gas each subscriber gets for `onReport`. A subscriber using more fails alone.
    uint256 public constant SUBSCRIBER_GAS = 1_000_000;
    /// @notice Bytes of a failing subscriber's revert data kept in `SubscriberFailed`.
    uint256 public constant MAX_REASON_BYTES = 256;

    uint256 private constant HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 private constant S_MASK = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF;
    int256 private constant MAX_DROUGHT_VALUE = 5_000_000;
    int256 private constant MAX_VERDICT = 2;
    /// @notice Longest model timelock the owner may set (so a typo cannot freeze governance for ages).
    uint64 public constant MAX_MODEL_DELAY = 30 days;
    /// @notice `oracle.reports.MAX_REVISIONS`: a drought epoch is the period's month index × 1000 +
    ///         revision (< 1000), a cold-chain epoch at most 1000.
    uint64 public constant MAX_REVISIONS = 1000;
    /// @dev The mean Gregorian month in seconds (146097 days / 4800 months) and the offset that makes
    ///      `(t + MONTH_OFFSET) / MEAN_MONTH` a month index never above the true one and at most one below
    ///      it (it lags by up to 4.4 days after a month starts). tests/chain checks both over 400 years.
    uint256 private constant MEAN_MONTH = 2_629_746;
    uint256 private constant MONTH_OFFSET = 62_167_042_890;
    /// @notice Governance change kinds of `scheduleAddSigner`, `scheduleThreshold`, `scheduleConsumerApproval`.
    uint8 public constant ADD_SIGNER = 1;
    uint8 public constant SET_THRESHOLD = 2;
    uint8 public constant APPROVE_CONSUMER = 3;
    /// @notice Most governance changes pending at once, so `pendingGovernance` stays a bounded read.
    uint256 public constant MAX_PENDING_CHANGES = 32;

    /// @notice Signatures needed to accept a report (k of k-of-n).
    uint8 public threshold;
    /// @notice Number of authorized signers (n).
    uint8 public signerCount;

    /// @dev signer => 1-based index into `_signerList`; 0 = not a signer.
    mapping(address => uint256) private _signerIndex;
    address[] private _signerList;

    /// @dev subject => packed latest state, see `_pack`.
    mapping(bytes32 => uint256) private _state;
    /// @dev subject => EIP-712 digest of the latest accepted report.
    mapping(bytes32 => bytes32) private _reportHash;
    /// @dev subject => month index => highest epoch accepted as a correction of that month (drought only).
    mapping(bytes32 => mapping(uint256 => uint64)) private _periodEpoch;
    /// @dev subject => slot => subscriber (slots 0 .. count-1 are used; count lives in `_state`).
    mapping(bytes32 => mapping(uint256 => address)) private _subscriberAt;
    /// @dev subject => subscriber => 1-based slot; 0 = not subscribed.
    mapping(bytes32 => mapping(address => uint256)) private _subscriberSlot;
    /// @notice Contracts the owner allows to subscribe. Without this gate anyone could fill a subject's
    ///         MAX_SUBSCRIBERS slots ahead of the pool or escrow and lock them out.
    mapping(address => bool) public approvedConsumer;

    /// @notice Seconds between scheduling a model and the earliest `activateModel` (0 = not armed).
    uint64 public modelDelay;
    /// @dev A lower delay waits out the current one, else lowering it would defeat the timelock.
    uint64 private _pendingDelay;
    uint64 private _pendingDelayAt;
    /// @dev kind => modelId => time it became active (0 = not approved). The only read on `submit`.
    mapping(uint8 => mapping(bytes32 => uint256)) private _modelActiveSince;
    struct PendingModel {
        uint64 activatesAt;
        bytes32 replaces;
    }
    /// @dev kind => modelId => scheduled change (activatesAt 0 = nothing scheduled).
    mapping(uint8 => mapping(bytes32 => PendingModel)) private _pendingModel;

    /// @notice A scheduled signer, threshold or consumer change. `target` is the signer or consumer
    ///         (0 for a threshold change), `threshold` the new threshold (0 unless SET_THRESHOLD).
    struct GovernanceChange {
        bytes32 id;
        uint8 action;
        address target;
        uint8 threshold;
        uint64 activatesAt;
    }
    /// @dev Pending changes, unordered (removal swaps the last one in); at most one per `changeId`.
    GovernanceChange[] private _pendingChanges;
    /// @dev changeId => 1-based index into `_pendingChanges`; 0 = nothing pending.
    mapping(bytes32 => uint256) private _pendingChangeIndex;

    event SignerAdded(address indexed signer);
    event SignerRemoved(address indexed signer);
    event ThresholdChanged(uint8 previous, uint8 current);
    event ConsumerApproval(address indexed consumer, bool approved);
    event Subscribed(bytes32 indexed subject, address indexed consumer);
    event Unsubscribed(bytes32 indexed subject, address indexed consumer);
    event ReportAccepted(
        bytes32 indexed subject,
        uint8 kind,
        int256 value,
        uint64 epoch,
        uint64 observedAt,
        bytes32 inputsRoot,
        bytes32 modelId,
        bytes32 reportHash
    );
    event SubscriberFailed(bytes32 indexed subject, address indexed consumer, bytes reason);
    event ModelScheduled(uint8 indexed kind, bytes32 indexed modelId, bytes32 replaces, uint64 activatesAt);
    event ModelActivated(uint8 indexed kind, bytes32 indexed modelId, bytes32 replaced);
    event ModelCancelled(uint8 indexed kind, bytes32 indexed modelId);
    event ModelRevoked(uint8 indexed kind, bytes32 indexed modelId);
    event ModelDelayScheduled(uint64 delay, uint64 effectiveAt);
    event ModelDelayChanged(uint64 previous, uint64 current);
    event GovernanceScheduled(
        bytes32 indexed id, uint8 indexed action, address indexed target, uint8 threshold, uint64 activatesAt
    );
    event GovernanceActivated(bytes32 indexed id, uint8 indexed action, address indexed target, uint8 threshold);
    event GovernanceCancelled(bytes32 indexed id, uint8 indexed action, address indexed target, uint8 threshold);

    error StaleEpoch(bytes32 subject, uint64 latest, uint64 given);
    error UnknownKind(uint8 kind);
    error ValueOutOfRange(uint8 kind, int256 value);
    error TooFewSignatures(uint256 given, uint256 required);
    error MalformedSignatures(uint256 length);
    error InvalidSignature(uint256 index);
    error UnknownSigner(address signer);
    error SignersNotAscending(uint256 index);
    error InvalidThreshold(uint256 threshold, uint256 signers);
    error AlreadySigner(address signer);
    error NotSigner(address signer);
    error TooManySigners();
    error ZeroAddress();
    error AlreadySubscribed(bytes32 subject, address consumer);
    error NotSubscribed(bytes32 subject, address consumer);
    error ConsumerNotApproved(address consumer);
    error TooManySubscribers(bytes32 subject);
    error InsufficientGasForSubscribers(uint256 needed, uint256 left);
    error ModelNotApproved(uint8 kind, bytes32 modelId);
    error ModelAlreadyApproved(uint8 kind, bytes32 modelId);
    error ModelNotScheduled(uint8 kind, bytes32 modelId);
    error ModelAlreadyScheduled(uint8 kind, bytes32 modelId);
    error TimelockNotExpired(uint64 activatesAt, uint64 now_);
    error InvalidModelId();
    error ModelDelayTooLong(uint64 delay, uint64 max);
    error NoPendingDelay();
    error EpochTooFarAhead(uint8 kind, uint64 epoch, uint256 maxEpoch);
    error ChangeAlreadyScheduled(bytes32 id);
    error ChangeNotScheduled(bytes32 id);
    error TooManyPendingChanges();

    constructor(address[] memory signers_, uint8 threshold_) EIP712("ParametricOracle", "1") {
        for (uint256 i = 0; i < signers_.length; ++i) {
            _addSigner(signers_[i]);
        }
        _setThreshold(threshold_);
    }

    // ------------------------------------------------------------------ signer set (owner)

    /// @notice Schedule adding `signer` (owner only); `activateGovernance` adds it `modelDelay` seconds
    ///         from now (at once while the delay is 0). Until then its signatures are UnknownSigner.
    /// @return id the change id, `changeId(ADD_SIGNER, signer)`.
    function scheduleAddSigner(address signer) external onlyOwner returns (bytes32 id) {
        if (signer == address(0)) revert ZeroAddress();
        if (_signerIndex[signer] != 0) revert AlreadySigner(signer);
        if (_signerList.length >= MAX_SIGNERS) revert TooManySigners();
        return _schedule(ADD_SIGNER, signer, 0);
    }

    /// @notice Schedule a new threshold (owner only), checked against the signer count when it
    ///         activates, so raising it may be scheduled beside the signers that make it valid. At most
    ///         one threshold change is pending: cancel it to schedule another.
    /// @return id the change id, `changeId(SET_THRESHOLD, address(0))`.
    function scheduleThreshold(uint8 threshold_) external onlyOwner returns (bytes32 id) {
        if (threshold_ == 0 || threshold_ > MAX_SIGNERS) revert InvalidThreshold(threshold_, _signerList.length);
        return _schedule(SET_THRESHOLD, address(0), threshold_);
    }

    /// @notice Remove `signer` at once (owner only): removal can only stop reports, never let one in.
    /// @dev Reverts with InvalidThreshold when removing would leave fewer signers than the threshold:
    ///      lower the threshold first (through the timelock).
    function removeSigner(address signer) external onlyOwner {
        uint256 idx = _signerIndex[signer];
        if (idx == 0) revert NotSigner(signer);
        uint256 n = _signerList.length;
        if (n - 1 < threshold) revert InvalidThreshold(threshold, n - 1);
        address last = _signerList[n - 1];
        _signerList[idx - 1] = last;
        _signerIndex[last] = idx;
        _signerList.pop();
        delete _signerIndex[signer];
        signerCount = uint8(n - 1);
        emit SignerRemoved(signer);
    }

    function isSigner(address account) external view returns (bool) {
        return _signerIndex[account] != 0;
    }

    function signers() external view returns (address[] memory) {
        return _signerList;
    }

    function _addSigner(address signer) private {
        if (signer == address(0)) revert ZeroAddress();
        if (_signerIndex[signer] != 0) revert AlreadySigner(signer);
        if (_signerList.length >= MAX_SIGNERS) revert TooManySigners();
        _signerList.push(signer);
        _signerIndex[signer] = _signerList.length;
        signerCount = uint8(_signerList.length);
        emit SignerAdded(signer);
    }

    function _setThreshold(uint8 threshold_) private {
        if (threshold_ == 0 || threshold_ > _signerList.length) {
            revert InvalidThreshold(threshold_, _signerList.length);
        }
        emit ThresholdChanged(threshold, threshold_);
        threshold = threshold_;
    }

    // ------------------------------------------------------------------ reports

    /// @notice EIP-712 domain separator (name "ParametricOracle", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 digest signers sign for `report`; equals `oracle.reports.report_digest`.
    function reportDigest(Report calldata report) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(REPORT_TYPEHASH, report)));
    }

    /// @notice Accept a report signed by at least `threshold` authorized signers and forward it.
    /// @param report the report; `epoch` must exceed the subject's latest epoch.
    /// @param signatures 64-byte EIP-2098 signatures, concatenated, signers in strictly ascending order.
    ///        Every signature given must be valid and from an authorized signer.
    /// @dev Anyone may relay a signed report. The caller must supply enough gas for every subscriber
    ///      to get `SUBSCRIBER_GAS`, otherwise the call reverts (so a relayer cannot starve subscribers).
    function submit(Report calldata report, bytes calldata signatures) external {
        _checkBounds(report.kind, report.value, report.epoch);
        bytes32 subject = report.subject;
        uint256 state = _state[subject];
        uint64 latestEpoch = uint64(state);
        bool correction = false;
        if (report.epoch <= latestEpoch) {
            _checkCorrection(subject, state, report.kind, report.epoch);
            correction = true;
        }
        if (_modelActiveSince[report.kind][report.modelId] == 0) {
            revert ModelNotApproved(report.kind, report.modelId);
        }

        bytes32 digest = reportDigest(report);
        _verify(digest, signatures);

        uint256 subscriberCount = state >> 240;
        if (correction) {
            _periodEpoch[subject][report.epoch / MAX_REVISIONS] = report.epoch;
        } else {
            _state[subject] = _pack(report, subscriberCount);
            _reportHash[subject] = digest;
        }
        emit ReportAccepted(
            subject,
            report.kind,
            report.value,
            report.epoch,
            report.observedAt,
            report.inputsRoot,
            report.modelId,
            digest
        );

        if (subscriberCount != 0) _forward(subject, subscriberCount, report);
    }

    /// @dev A drought report whose epoch is not above the subject's latest is a correction of an earlier
    ///      period (month): accepted when the latest is a drought report of a later month and the epoch is
    ///      above every correction already accepted for that month. Anything else is StaleEpoch.
    function _checkCorrection(bytes32 subject, uint256 state, uint8 kind, uint64 epoch) private view {
        uint64 latestEpoch = uint64(state);
        uint256 period = epoch / MAX_REVISIONS;
        if (
            kind != ReportKinds.DROUGHT_SEVERITY || uint8(state >> 224) != ReportKinds.DROUGHT_SEVERITY
                || period >= latestEpoch / MAX_REVISIONS || epoch <= _periodEpoch[subject][period]
        ) revert StaleEpoch(subject, latestEpoch, epoch);
    }

    /// @notice The highest epoch accepted as a correction of `period` (a month index) for `subject`, 0 if
    ///         none; the latest report's own period is in `latest`.
    function correctionEpoch(bytes32 subject, uint256 period) external view returns (uint64) {
        return _periodEpoch[subject][period];
    }

    /// @dev Value range and epoch bound per kind. A drought epoch is the observed month's index × 1000 +
    ///      revision and that month has ended when it is reported, so the bound, this block's month
    ///      index × 1000 + 999, already leaves a month between any honest epoch and the bound: a signer
    ///      whose clock is ahead of `block.timestamp` by less than a month is never refused, and no extra
    ///      month is allowed for skew. The bound equals the signers' own (`oracle.reports.max_epoch`).
    ///      Gas: a cheap lower estimate of the month index (one division) clears every honest epoch, so the
    ///      exact calendar arithmetic runs only for an epoch of the current month or beyond.
    function _checkBounds(uint8 kind, int256 value, uint64 epoch) private view {
        if (kind == ReportKinds.DROUGHT_SEVERITY) {
            if (value < 0 || value > MAX_DROUGHT_VALUE) revert ValueOutOfRange(kind, value);
            unchecked {
                uint256 lowMonth = (block.timestamp + MONTH_OFFSET) / MEAN_MONTH;
                if (epoch > lowMonth * MAX_REVISIONS + (MAX_REVISIONS - 1)) {
                    uint256 maxEpoch = monthIndex(block.timestamp) * MAX_REVISIONS + (MAX_REVISIONS - 1);
                    if (epoch > maxEpoch) revert EpochTooFarAhead(kind, epoch, maxEpoch);
                }
            }
        } else if (kind == ReportKinds.COLDCHAIN_VERDICT) {
            if (value < 0 || value > MAX_VERDICT) revert ValueOutOfRange(kind, value);
            if (epoch > MAX_REVISIONS) revert EpochTooFarAhead(kind, epoch, MAX_REVISIONS);
        } else {
            revert UnknownKind(kind);
        }
    }

    /// @notice Months since year 0 of the UTC month containing `timestamp`: year × 12 + month − 1, as
    ///         `oracle.reports.month_index_of`.
    /// @dev Howard Hinnant's civil_from_days on the proleptic Gregorian calendar, with years counted from
    ///      March so leap days fall at a year's end: month index = March-based year × 12 + (months since
    ///      March) + 2. Unchecked: every intermediate is far from overflow and never negative.
    function monthIndex(uint256 timestamp) public pure returns (uint256) {
        unchecked {
            uint256 z = timestamp / 1 days + 719_468; // days since 0000-03-01
            uint256 era = z / 146_097;
            uint256 doe = z - era * 146_097; // day of era, 0 .. 146096
            uint256 yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0 .. 399
            uint256 doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0 .. 365
            uint256 mp = (5 * doy + 2) / 153; // months since March, 0 .. 11
            return (era * 400 + yoe) * 12 + mp + 2;
        }
    }

    /// @notice The latest accepted report for `subject` (all zero when none).
    function latest(bytes32 subject)
        external
        view
        returns (uint64 epoch, uint64 observedAt, int256 value, uint8 kind, bytes32 reportHash)
    {
        uint256 state = _state[subject];
        epoch = uint64(state);
        observedAt = uint64(state >> 64);
        value = int256(int96(uint96(state >> 128)));
        kind = uint8(state >> 224);
        reportHash = _reportHash[subject];
    }

    function _verify(bytes32 digest, bytes calldata signatures) private view {
        uint256 len = signatures.length;
        if (len % 64 != 0) revert MalformedSignatures(len);
        uint256 count = len / 64;
        if (count < threshold) revert TooFewSignatures(count, threshold);
        // Signers are handled as uint256 words, as the ecrecover precompile returns them (zero-padded
        // addresses), so the loop needs no address masks; that keeps `submit` within its gas goals.
        uint256 previous = 0;
        for (uint256 i = 0; i < count; ) {
            uint256 s;
            uint256 signer;
            uint256 known;
            assembly ("memory-safe") {
                let p := add(signatures.offset, shl(6, i))
                let vs := calldataload(add(p, 32))
                s := and(vs, S_MASK)
                let m := mload(0x40)
                mstore(m, digest)
                mstore(add(m, 32), add(shr(255, vs), 27))
                mstore(add(m, 64), calldataload(p))
                mstore(add(m, 96), s)
                mstore(0, 0) // the precompile returns nothing for an invalid signature: read 0 then
                pop(staticcall(gas(), 1, m, 128, 0, 32))
                signer := mload(0)
                mstore(0, signer)
                mstore(32, _signerIndex.slot)
                known := sload(keccak256(0, 64))
            }
            // High-s signatures are the malleable twin of a low-s one; eth-account never makes them.
            if (s > HALF_CURVE_ORDER || signer == 0) revert InvalidSignature(i);
            if (signer <= previous) revert SignersNotAscending(i);
            if (known == 0) revert UnknownSigner(address(uint160(signer)));
            previous = signer;
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Layout: epoch (bits 0-63) | observedAt (64-127) | value as int96 (128-223) | kind (224-231)
    ///      | subscriber count (240-255). `submit` bounds value to 0 .. 5e6, so int96 holds it.
    function _pack(Report calldata report, uint256 subscriberCount) private pure returns (uint256) {
        return uint256(report.epoch) | (uint256(report.observedAt) << 64)
            | (uint256(uint96(int96(report.value))) << 128) | (uint256(report.kind) << 224)
            | (subscriberCount << 240);
    }

    // ------------------------------------------------------------------ model governance

    /// @notice Schedule `modelId` for `kind`, optionally replacing `replaces` (0 = a plain addition).
    ///         It can be activated `modelDelay` seconds from now; with no delay it is active at once.
    ///         The replaced model stays valid until the new one activates, so reports never stop.
    function scheduleModel(uint8 kind, bytes32 modelId, bytes32 replaces) external onlyOwner {
        _checkKind(kind);
        if (modelId == bytes32(0) || modelId == replaces) revert InvalidModelId();
        if (_modelActiveSince[kind][modelId] != 0) revert ModelAlreadyApproved(kind, modelId);
        if (_pendingModel[kind][modelId].activatesAt != 0) revert ModelAlreadyScheduled(kind, modelId);
        if (replaces != bytes32(0) && _modelActiveSince[kind][replaces] == 0) {
            revert ModelNotApproved(kind, replaces);
        }
        uint64 delay = modelDelay;
        uint64 activatesAt = uint64(block.timestamp) + delay;
        emit ModelScheduled(kind, modelId, replaces, activatesAt);
        if (delay == 0) {
            _activate(kind, modelId, replaces);
        } else {
            _pendingModel[kind][modelId] = PendingModel(activatesAt, replaces);
        }
    }

    /// @notice Make a scheduled model effective once its timelock has passed. Anyone may call it.
    function activateModel(uint8 kind, bytes32 modelId) external {
        PendingModel memory p = _pendingModel[kind][modelId];
        if (p.activatesAt == 0) revert ModelNotScheduled(kind, modelId);
        if (block.timestamp < p.activatesAt) revert TimelockNotExpired(p.activatesAt, uint64(block.timestamp));
        delete _pendingModel[kind][modelId];
        _activate(kind, modelId, p.replaces);
    }

    /// @notice Drop a scheduled, not yet active model (owner only).
    function cancelModel(uint8 kind, bytes32 modelId) external onlyOwner {
        if (_pendingModel[kind][modelId].activatesAt == 0) revert ModelNotScheduled(kind, modelId);
        delete _pendingModel[kind][modelId];
        emit ModelCancelled(kind, modelId);
    }

    /// @notice Stop accepting reports from `modelId` at once (owner only). No timelock: removing a model
    ///         can only stop reports, never change what an accepted report says.
    function revokeModel(uint8 kind, bytes32 modelId) external onlyOwner {
        if (_modelActiveSince[kind][modelId] == 0) revert ModelNotApproved(kind, modelId);
        delete _modelActiveSince[kind][modelId];
        emit ModelRevoked(kind, modelId);
    }

    /// @notice Set the model timelock in seconds (owner only, at most MAX_MODEL_DELAY). A longer delay
    ///         applies at once; a shorter one only after the current delay (`applyModelDelay`).
    function setModelDelay(uint64 delay) external onlyOwner {
        if (delay > MAX_MODEL_DELAY) revert ModelDelayTooLong(delay, MAX_MODEL_DELAY);
        uint64 current = modelDelay;
        delete _pendingDelay;
        delete _pendingDelayAt;
        if (delay >= current) {
            modelDelay = delay;
            emit ModelDelayChanged(current, delay);
        } else {
            uint64 effectiveAt = uint64(block.timestamp) + current;
            _pendingDelay = delay;
            _pendingDelayAt = effectiveAt;
            emit ModelDelayScheduled(delay, effectiveAt);
        }
    }

    /// @notice Apply a scheduled shorter delay once its wait is over. Anyone may call it.
    function applyModelDelay() external {
        if (_pendingDelayAt == 0) revert NoPendingDelay();
        if (block.timestamp < _pendingDelayAt) {
            revert TimelockNotExpired(_pendingDelayAt, uint64(block.timestamp));
        }
        uint64 previous = modelDelay;
        modelDelay = _pendingDelay;
        delete _pendingDelay;
        delete _pendingDelayAt;
        emit ModelDelayChanged(previous, modelDelay);
    }

    /// @notice A scheduled shorter delay and when it may be applied (0, 0 when none).
    function pendingModelDelay() external view returns (uint64 delay, uint64 effectiveAt) {
        return (_pendingDelay, _pendingDelayAt);
    }

    /// @notice Whether reports of `kind` from `modelId` are accepted now.
    function isModelApproved(uint8 kind, bytes32 modelId) external view returns (bool) {
        return _modelActiveSince[kind][modelId] != 0;
    }

    /// @notice When `modelId` became active for `kind` (0 = not approved).
    function modelActiveSince(uint8 kind, bytes32 modelId) external view returns (uint64) {
        return uint64(_modelActiveSince[kind][modelId]);
    }

    /// @notice A scheduled model change: earliest activation time (0 = none) and the model it replaces.
    function pendingModel(uint8 kind, bytes32 modelId)
        external
        view
        returns (uint64 activatesAt, bytes32 replaces)
    {
        PendingModel memory p = _pendingModel[kind][modelId];
        return (p.activatesAt, p.replaces);
    }

    function _activate(uint8 kind, bytes32 modelId, bytes32 replaces) private {
        _modelActiveSince[kind][modelId] = block.timestamp;
        if (replaces != bytes32(0) && _modelActiveSince[kind][replaces] != 0) {
            delete _modelActiveSince[kind][replaces];
            emit ModelRevoked(kind, replaces);
        }
        emit ModelActivated(kind, modelId, replaces);
    }

    function _checkKind(uint8 kind) private pure {
        if (kind != ReportKinds.DROUGHT_SEVERITY && kind != ReportKinds.COLDCHAIN_VERDICT) {
            revert UnknownKind(kind);
        }
    }

    // ------------------------------------------------------------------ signer, threshold and consumer governance

    /// @notice The id of a scheduled governance change: keccak256(abi.encode(action, target)), with
    ///         target 0 for SET_THRESHOLD (so at most one threshold change is pending).
    function changeId(uint8 action, address target) public pure returns (bytes32) {
        return keccak256(abi.encode(action, target));
    }

    /// @notice Make a scheduled signer, threshold or consumer change effective once its timelock has
    ///         passed. Anyone may call it. The change is checked again against the router as it is now
    ///         (e.g. a threshold above the current signer count reverts InvalidThreshold).
    function activateGovernance(bytes32 id) external {
        GovernanceChange memory c = _pendingChange(id);
        if (block.timestamp < c.activatesAt) revert TimelockNotExpired(c.activatesAt, uint64(block.timestamp));
        _dropPending(id);
        _apply(c);
    }

    /// @notice Drop a scheduled, not yet active signer, threshold or consumer change (owner only).
    function cancelGovernance(bytes32 id) external onlyOwner {
        GovernanceChange memory c = _pendingChange(id);
        _dropPending(id);
        emit GovernanceCancelled(id, c.action, c.target, c.threshold);
    }

    /// @notice Every scheduled, not yet activated signer, threshold and consumer change, with the time
    ///         from which `activateGovernance` accepts it (at most MAX_PENDING_CHANGES, unordered).
    function pendingGovernance() external view returns (GovernanceChange[] memory) {
        return _pendingChanges;
    }

    /// @notice One scheduled change by id (all zero when none is pending).
    function pendingChange(bytes32 id) external view returns (GovernanceChange memory c) {
        uint256 idx = _pendingChangeIndex[id];
        if (idx != 0) c = _pendingChanges[idx - 1];
    }

    function _schedule(uint8 action, address target, uint8 threshold_) private returns (bytes32 id) {
        id = changeId(action, target);
        if (_pendingChangeIndex[id] != 0) revert ChangeAlreadyScheduled(id);
        uint64 delay = modelDelay;
        GovernanceChange memory c = GovernanceChange(id, action, target, threshold_, uint64(block.timestamp) + delay);
        emit GovernanceScheduled(id, action, target, threshold_, c.activatesAt);
        if (delay == 0) {
            _apply(c);
        } else {
            if (_pendingChanges.length >= MAX_PENDING_CHANGES) revert TooManyPendingChanges();
            _pendingChanges.push(c);
            _pendingChangeIndex[id] = _pendingChanges.length;
        }
    }

    function _pendingChange(bytes32 id) private view returns (GovernanceChange memory) {
        uint256 idx = _pendingChangeIndex[id];
        if (idx == 0) revert ChangeNotScheduled(id);
        return _pendingChanges[idx - 1];
    }

    function _dropPending(bytes32 id) private {
        uint256 idx = _pendingChangeIndex[id];
        uint256 n = _pendingChanges.length;
        if (idx != n) {
            GovernanceChange memory last = _pendingChanges[n - 1];
            _pendingChanges[idx - 1] = last;
            _pendingChangeIndex[last.id] = idx;
        }
        _pendingChanges.pop();
        delete _pendingChangeIndex[id];
    }

    function _apply(GovernanceChange memory c) private {
        if (c.action == ADD_SIGNER) {
            _addSigner(c.target);
        } else if (c.action == SET_THRESHOLD) {
            _setThreshold(c.threshold);
        } else {
            approvedConsumer[c.target] = true;
            emit ConsumerApproval(c.target, true);
        }
        emit GovernanceActivated(c.id, c.action, c.target, c.threshold);
    }

    // ------------------------------------------------------------------ subscriptions

    /// @notice Schedule allowing `consumer` to subscribe (owner only); `activateGovernance` approves it
    ///         `modelDelay` seconds from now (at once while the delay is 0). An approved consumer can
    ///         take a subject's subscriber slots and adds to what relaying its every report costs, so
    ///         approving one waits like a model does, in sight of the insured.
    /// @return id the change id, `changeId(APPROVE_CONSUMER, consumer)`.
    function scheduleConsumerApproval(address consumer) external onlyOwner returns (bytes32 id) {
        if (consumer == address(0)) revert ZeroAddress();
        return _schedule(APPROVE_CONSUMER, consumer, 0);
    }

    /// @notice Withdraw `consumer`'s approval at once (owner only), cancelling a scheduled approval too.
    ///         Existing subscriptions stay; use `removeSubscriber` for those.
    function revokeConsumerApproval(address consumer) external onlyOwner {
        if (consumer == address(0)) revert ZeroAddress();
        bytes32 id = changeId(APPROVE_CONSUMER, consumer);
        if (_pendingChangeIndex[id] != 0) {
            _dropPending(id);
            emit GovernanceCancelled(id, APPROVE_CONSUMER, consumer, 0);
        }
        approvedConsumer[consumer] = false;
        emit ConsumerApproval(consumer, false);
    }

    /// @notice Subscribe the calling contract to `subject`. The caller must be an approved consumer;
    ///         at most MAX_SUBSCRIBERS per subject.
    function subscribe(bytes32 subject) external {
        if (!approvedConsumer[msg.sender]) revert ConsumerNotApproved(msg.sender);
        if (_subscriberSlot[subject][msg.sender] != 0) revert AlreadySubscribed(subject, msg.sender);
        uint256 state = _state[subject];
        uint256 n = state >> 240;
        if (n >= MAX_SUBSCRIBERS) revert TooManySubscribers(subject);
        _subscriberAt[subject][n] = msg.sender;
        _subscriberSlot[subject][msg.sender] = n + 1;
        _state[subject] = (state & ~(uint256(0xFFFF) << 240)) | ((n + 1) << 240);
        emit Subscribed(subject, msg.sender);
    }

    /// @notice Unsubscribe the calling contract from `subject`.
    function unsubscribe(bytes32 subject) external {
        _unsubscribe(subject, msg.sender);
    }

    /// @notice Remove `consumer` from `subject` (owner only), e.g. a misbehaving or retired contract.
    function removeSubscriber(bytes32 subject, address consumer) external onlyOwner {
        _unsubscribe(subject, consumer);
    }

    function _unsubscribe(bytes32 subject, address consumer) private {
        uint256 slot = _subscriberSlot[subject][consumer];
        if (slot == 0) revert NotSubscribed(subject, consumer);
        uint256 state = _state[subject];
        uint256 n = state >> 240;
        address last = _subscriberAt[subject][n - 1];
        _subscriberAt[subject][slot - 1] = last;
        _subscriberSlot[subject][last] = slot;
        delete _subscriberAt[subject][n - 1];
        delete _subscriberSlot[subject][consumer];
        _state[subject] = (state & ~(uint256(0xFFFF) << 240)) | ((n - 1) << 240);
        emit Unsubscribed(subject, consumer);
    }

    function subscribers(bytes32 subject) external view returns (address[] memory list) {
        uint256 n = _state[subject] >> 240;
        list = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            list[i] = _subscriberAt[subject][i];
        }
    }

    function _forward(bytes32 subject, uint256 n, Report calldata report) private {
        // Copy the list first: a subscriber may (un)subscribe while we iterate.
        address[] memory list = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            list[i] = _subscriberAt[subject][i];
        }
        bytes memory payload = abi.encodeCall(IReportSubscriber.onReport, (report));
        for (uint256 i = 0; i < n; ++i) {
            // EIP-150 passes at most 63/64 of what is left: demand enough that each subscriber
            // really gets SUBSCRIBER_GAS, so an under-funded relay reverts instead of failing them.
            uint256 needed = (SUBSCRIBER_GAS * 64) / 63 + 10_000;
            if (gasleft() < needed) revert InsufficientGasForSubscribers(needed, gasleft());
            address consumer = list[i];
            bool ok;
            uint256 rsize;
            assembly {
                ok := call(SUBSCRIBER_GAS, consumer, 0, add(payload, 32), mload(payload), 0, 0)
                rsize := returndatasize()
            }
            if (!ok) {
                // Copy at most MAX_REASON_BYTES so a huge revert payload cannot exhaust our gas.
                if (rsize > MAX_REASON_BYTES) rsize = MAX_REASON_BYTES;
                bytes memory reason = new bytes(rsize);
                assembly {
                    returndatacopy(add(reason, 32), 0, rsize)
                }
                emit SubscriberFailed(subject, consumer, reason);
            }
        }
    }
}
