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
///      Model governance: a report is accepted only when its `modelId` is approved for its kind.
///      Approving or replacing a model is scheduled by the owner and takes effect after `modelDelay`
///      (a timelock, so insured parties see a model change before it can touch them); anyone may then
///      call `activateModel`. Revoking is immediate (a broken model must stop at once). While
///      `modelDelay` is 0 (a fresh router, before `setModelDelay` arms the timelock) a scheduled model
///      is active at once: deployment approves its initial models this way, then arms the delay.
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

    constructor(address[] memory signers_, uint8 threshold_) EIP712("ParametricOracle", "1") {
        for (uint256 i = 0; i < signers_.length; ++i) {
            _addSigner(signers_[i]);
        }
        _setThreshold(threshold_);
    }

    // ------------------------------------------------------------------ signer set (owner)

    function addSigner(address signer) external onlyOwner {
        _addSigner(signer);
    }

    /// @dev Reverts with InvalidThreshold when removing would leave fewer signers than the threshold:
    ///      lower the threshold first.
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

    function setThreshold(uint8 threshold_) external onlyOwner {
        _setThreshold(threshold_);
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
        _checkValue(report.kind, report.value);
        bytes32 subject = report.subject;
        uint256 state = _state[subject];
        uint64 latestEpoch = uint64(state);
        if (report.epoch <= latestEpoch) revert StaleEpoch(subject, latestEpoch, report.epoch);
        if (_modelActiveSince[report.kind][report.modelId] == 0) {
            revert ModelNotApproved(report.kind, report.modelId);
        }

        bytes32 digest = reportDigest(report);
        _verify(digest, signatures);

        uint256 subscriberCount = state >> 240;
        _state[subject] = _pack(report, subscriberCount);
        _reportHash[subject] = digest;
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

    function _checkValue(uint8 kind, int256 value) private pure {
        if (kind == ReportKinds.DROUGHT_SEVERITY) {
            if (value < 0 || value > MAX_DROUGHT_VALUE) revert ValueOutOfRange(kind, value);
        } else if (kind == ReportKinds.COLDCHAIN_VERDICT) {
            if (value < 0 || value > MAX_VERDICT) revert ValueOutOfRange(kind, value);
        } else {
            revert UnknownKind(kind);
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
        address previous = address(0);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 r;
            bytes32 vs;
            assembly {
                let p := add(signatures.offset, mul(i, 64))
                r := calldataload(p)
                vs := calldataload(add(p, 32))
            }
            uint256 s = uint256(vs) & S_MASK;
            // High-s signatures are the malleable twin of a low-s one; eth-account never makes them.
            if (s > HALF_CURVE_ORDER) revert InvalidSignature(i);
            address signer = ecrecover(digest, uint8((uint256(vs) >> 255) + 27), r, bytes32(s));
            if (signer == address(0)) revert InvalidSignature(i);
            if (signer <= previous) revert SignersNotAscending(i);
            if (_signerIndex[signer] == 0) revert UnknownSigner(signer);
            previous = signer;
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

    // ------------------------------------------------------------------ subscriptions

    /// @notice Allow or disallow `consumer` to subscribe (owner only). Disallowing does not remove
    ///         existing subscriptions; use `removeSubscriber` for that.
    function setConsumerApproval(address consumer, bool approved) external onlyOwner {
        if (consumer == address(0)) revert ZeroAddress();
        approvedConsumer[consumer] = approved;
        emit ConsumerApproval(consumer, approved);
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
