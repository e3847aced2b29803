// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";
import {EscrowBondVault} from "./EscrowBondVault.sol";

/// @title ColdChainEscrow
/// @notice A buyer escrows payment for a temperature-controlled shipment on terms its seller accepts.
///
///         1. The buyer proposes (`createShipment`): shipment name, seller, token, amount, profile, expected
///            delivery and deadline, and deposits the amount. The name must begin with the buyer's own
///            address: `"0x" + 40 lowercase hex digits of the buyer + ":" + reference`, the reference 1 ..
///            MAX_REFERENCE characters of A-Z a-z 0-9 . _ - (else NameNotBuyers / BadShipmentName). The
///            escrow derives the shipment id itself, keccak256("shipment:" + name), the oracle's report
///            subject (`subject_id("shipment", name)`), so only that buyer can ever propose under the id.
///            The amount recorded is what the escrow received (balance difference), so a fee-on-transfer
///            token cannot overstate it. The profile must be in this contract's profile registry, and the
///            deadline at least the profile's minimum settlement window after the expected delivery, so a
///            verdict can exist before it.
///         2. Until the seller accepts, nothing can settle the deposit: a verdict for the shipment id is
///            ignored and the buyer may `cancelShipment` at any time and get the whole deposit back.
///         3. The seller accepts (`acceptShipment`) the exact terms, named by their hash. Only then is the
///            shipment id bound to this buyer and seller and subscribed to the router's reports.
///         4. The shipment's COLDCHAIN_VERDICT report settles it: 1 (BREACH) refunds the buyer,
///            2 (DELIVERED) pays the seller, 0 (no decision) changes nothing. After the deadline the buyer
///            can reclaim an accepted, unsettled shipment, so funds are never locked forever. Each
///            shipment settles exactly once.
///
///         Nobody can take a shipment id first (front-run): the id is a hash of a name that carries the
///         buyer's address, which only the buyer can propose; a copy of the name from another account
///         reverts, and a name with another address is another id. Proposals are keyed by (shipment id,
///         buyer, seller); the id is bound to its seller when the seller accepts, and a second acceptance
///         of the same id (the buyer proposed it to two sellers) reverts.
///
///         Liveness and disputes (issue 14), per shipment terms (`createShipmentWithWindow`; part of the
///         terms hash the seller accepts). With a liveness window W = 0 (`createShipment`) a verdict settles
///         at once, as above. With W > 0 a BREACH or DELIVERED verdict is only held (`VerdictHeld`); once W
///         has passed since it arrived anyone may `finalize` the shipment, which then settles as above. A
///         later verdict (higher epoch, the router's rule) replaces the held one and restarts the window; a
///         later NO_DECISION clears it. While it is held inside its window, anyone may
///         `dispute(subject, epoch, evidenceCid)` it with the terms' bond in the shipment's token (held by
///         `bonds`, an EscrowBondVault, apart from the deposits). A disputed verdict is frozen: nothing
///         pays or voids on it. `resolveDispute` settles it: upheld when the network has since posted a
///         later verdict for the shipment (bond back to the watcher; there is no reward: the escrow has no
///         capital of its own, see docs/watching.md); rejected once the answer window has passed with no
///         replacement (the bond goes to the party the frozen verdict pays, for the delay, and the verdict
///         then applies). One dispute per verdict.
///
///         Deadline rule: `reclaim` refuses while a verdict is held (pending, disputed, or waiting for
///         `finalize`): a verdict that reached the escrow before the buyer reclaimed always decides the
///         shipment, so the buyer cannot overtake a pending DELIVERED by waiting out the deadline. A held
///         verdict is final at most W + answer window after it arrived, so funds are still never locked.
/// @dev Profiles: `setProfile` (owner only) records each profile's file hash and minimum settlement
///      window, with an event; a shipment can only be proposed or accepted on a registered profile.
contract ColdChainEscrow is IReportSubscriber {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Open,
        Voided,
        Released,
        Reclaimed,
        Proposed,
        Cancelled
    }

    struct Shipment {
        address buyer;
        uint64 deadline;
        Status status;
        address seller;
        IERC20 token;
        uint256 amount;
        bytes32 profile;
        uint64 expectedDelivery;
        /// @dev seconds a verdict is held before it applies (0: at once; no disputes).
        uint32 liveness;
        /// @dev seconds the network has to answer a dispute with a replacement before it can be rejected.
        uint32 answerWindow;
        /// @dev bond a dispute takes, in the shipment's token (0: no disputes).
        uint128 disputeBond;
    }

    /// @notice What `createShipmentWithWindow` takes: the terms of `createShipment` plus the window.
    struct ShipmentTerms {
        address seller;
        IERC20 token;
        uint256 amount;
        bytes32 profile;
        uint64 expectedDelivery;
        uint64 deadline;
        uint32 liveness;
        uint32 answerWindow;
        uint128 disputeBond;
    }

    /// @notice The latest verdict of a shipment with a liveness window (value 0: none held).
    struct HeldVerdict {
        int8 value;
        uint64 epoch;
        uint40 arrivedAt;
    }

    enum DisputeStatus {
        None,
        Open,
        Upheld,
        Rejected
    }

    /// @dev Field order as DroughtInsurancePool.Dispute, so one watcher reads both.
    struct Dispute {
        address watcher;
        uint40 filedAt;
        DisputeStatus status;
        uint128 bond;
    }

    struct Profile {
        bytes32 fileHash;
        uint64 minSettlementS;
    }

    int256 private constant BREACH = 1;
    int256 private constant DELIVERED = 2;
    /// @notice Longest liveness window and dispute answer window.
    uint32 public constant MAX_WINDOW = 30 days;
    /// @notice Longest reference after the buyer's prefix in a shipment name (so a name is at most
    ///         43 + 64 = 107 characters, inside the oracle's 120-character subject names).
    uint256 public constant MAX_REFERENCE = 64;
    /// @dev "0x" + 40 hex digits + ":".
    uint256 private constant PREFIX_LENGTH = 43;

    IOracleRouter public immutable router;
    address public owner;
    mapping(bytes32 => Profile) private _profiles;
    /// proposal key (keccak256(shipmentId, buyer, seller)) => terms and state
    mapping(bytes32 => Shipment) private _proposals;
    /// shipment id => the accepted proposal's key
    mapping(bytes32 => bytes32) public boundTo;
    /// @notice Holds the open disputes' bonds (per token, its balance is their sum).
    EscrowBondVault public immutable bonds;
    /// @notice Per token, Σ bonds of open disputes (== the vault's balance of that token).
    mapping(address => uint256) public openBonds;
    /// @dev shipment id => its held verdict (shipments with a window only).
    mapping(bytes32 => HeldVerdict) private _held;
    /// @dev shipment id => epoch => dispute.
    mapping(bytes32 => mapping(uint64 => Dispute)) private _disputes;

    event ProfileSet(bytes32 indexed profile, bytes32 fileHash, uint64 minSettlementS);
    event OwnerChanged(address indexed owner);
    event ShipmentProposed(
        bytes32 indexed shipmentId,
        address indexed buyer,
        address indexed seller,
        bytes32 termsHash,
        uint256 amount,
        bytes32 profile,
        uint64 expectedDelivery,
        uint64 deadline,
        string name
    );
    event ShipmentCancelled(bytes32 indexed shipmentId, address indexed buyer, address indexed seller, uint256 refund);
    /// Emitted when the seller accepts: the shipment id is now bound to these parties and terms.
    event ShipmentRegistered(
        bytes32 indexed shipmentId,
        address indexed buyer,
        address indexed seller,
        address token,
        uint256 amount,
        bytes32 profile,
        uint64 deadline
    );
    event ShipmentVoided(bytes32 indexed shipmentId, uint64 epoch, uint256 refund);
    event ShipmentReleased(bytes32 indexed shipmentId, uint64 epoch, uint256 amount);
    event ShipmentReclaimed(bytes32 indexed shipmentId, uint256 refund);
    /// Emitted with ShipmentProposed when the terms carry a liveness window.
    event ShipmentWindow(bytes32 indexed shipmentId, bytes32 termsHash, uint32 liveness, uint32 answerWindow, uint128 disputeBond);
    /// A verdict of a shipment with a window is held until `releasableAt` (value 0 clears the held one).
    event VerdictHeld(bytes32 indexed shipmentId, uint64 indexed epoch, int256 value, uint64 releasableAt);
    event DisputeFiled(
        bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond, string evidenceCid
    );
    event DisputeUpheld(bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond, uint256 reward);
    event DisputeRejected(bytes32 indexed subject, uint64 indexed epoch, address indexed watcher, uint256 bond);

    error NotRouter(address caller);
    error NotOwner(address caller);
    error ShipmentExists(bytes32 shipmentId);
    /// The name does not begin with "0x" + the caller's address in lowercase hex + ":".
    error NameNotBuyers(string name, address buyer);
    /// The reference after the buyer's prefix is empty, too long, or has a character outside A-Z a-z 0-9 . _ -.
    error BadShipmentName(string name, string why);
    error BadShipment(string why);
    error NotBuyer(address caller);
    error NotOpen(bytes32 shipmentId);
    error NotProposed(bytes32 shipmentId);
    error TermsChanged(bytes32 expected, bytes32 actual);
    error UnknownProfile(bytes32 profile);
    error DeadlineTooEarly(uint64 deadline, uint64 earliest);
    error DeadlineNotReached(uint64 deadline);
    error BadWindow(string why);
    error VerdictHeldBack(bytes32 shipmentId, uint64 epoch);
    error NotFinal(bytes32 shipmentId, string why);
    error DisputesOff(bytes32 shipmentId);
    error NotDisputable(bytes32 subject, uint64 epoch, string why);
    error NoOpenDispute(bytes32 subject, uint64 epoch);
    error DisputeUnanswered(bytes32 subject, uint64 epoch, uint256 rejectableAt);

    constructor(IOracleRouter router_) {
        router = router_;
        owner = msg.sender;
        bonds = new EscrowBondVault();
        emit OwnerChanged(msg.sender);
    }

    // -- profile registry ------------------------------------------------------------------------

    /// @notice Register or update `profile` (the name as bytes32) with the keccak256 of its profile file
    ///         and the minimum seconds from expected delivery to deadline. A zero file hash removes it.
    function setProfile(bytes32 profile, bytes32 fileHash, uint64 minSettlementS) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _profiles[profile] = Profile({fileHash: fileHash, minSettlementS: minSettlementS});
        emit ProfileSet(profile, fileHash, minSettlementS);
    }

    function transferOwnership(address owner_) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        owner = owner_;
        emit OwnerChanged(owner_);
    }

    function profileOf(bytes32 profile) external view returns (Profile memory) {
        return _profiles[profile];
    }

    // -- proposal, acceptance, cancellation ------------------------------------------------------

    function proposalKey(bytes32 shipmentId, address buyer, address seller) public pure returns (bytes32) {
        return keccak256(abi.encode(shipmentId, buyer, seller));
    }

    /// @notice The hash the seller accepts: every term of the proposal, amount as received, and the
    ///         liveness window with its dispute terms.
    function termsHash(bytes32 shipmentId, Shipment memory s) public pure returns (bytes32) {
        bytes32 base = keccak256(
            abi.encode(
                shipmentId, s.buyer, s.seller, s.token, s.amount, s.profile, s.expectedDelivery, s.deadline
            )
        );
        return keccak256(abi.encode(base, s.liveness, s.answerWindow, s.disputeBond));
    }

    /// @notice The shipment id of `name`: keccak256("shipment:" + name), the oracle's report subject
    ///         `subject_id("shipment", name)`.
    function shipmentIdOf(string calldata name) public pure returns (bytes32) {
        return keccak256(abi.encodePacked("shipment:", name));
    }

    /// @notice Propose a shipment to `seller` and deposit `amount` of `token` from the caller (the buyer),
    ///         who must have approved this contract. `name` is `"0x" + the caller's address in lowercase
    ///         hex + ":" + reference` (see the contract notes); the shipment id is `shipmentIdOf(name)`.
    ///         Returns the terms hash the seller accepts.
    /// @param expectedDelivery unix seconds the shipment is expected to arrive.
    /// @param deadline unix seconds after which the buyer may reclaim an accepted, unsettled shipment;
    ///        at least the profile's minimum settlement window after `expectedDelivery`.
    function createShipment(
        string calldata name,
        address seller,
        IERC20 token,
        uint256 amount,
        bytes32 profile,
        uint64 expectedDelivery,
        uint64 deadline
    ) external returns (bytes32) {
        return _create(
            name,
            ShipmentTerms({
                seller: seller,
                token: token,
                amount: amount,
                profile: profile,
                expectedDelivery: expectedDelivery,
                deadline: deadline,
                liveness: 0,
                answerWindow: 0,
                disputeBond: 0
            })
        );
    }

    /// @notice `createShipment` with a liveness window: a verdict is held `t.liveness` seconds (1 ..
    ///         MAX_WINDOW) before it applies, and may be disputed meanwhile with a bond of `t.disputeBond`
    ///         of the shipment's token (0: no disputes); the network has `t.answerWindow` seconds (1 ..
    ///         MAX_WINDOW) to answer a dispute with a replacement verdict. A zero liveness is
    ///         `createShipment` (the answer window and bond must then be 0).
    function createShipmentWithWindow(string calldata name, ShipmentTerms calldata t) external returns (bytes32) {
        return _create(name, t);
    }

    /// @dev Reverts unless `name` is `"0x" + buyer in lowercase hex + ":" + reference` with a reference of
    ///      1 .. MAX_REFERENCE characters of A-Z a-z 0-9 . _ -. Word-wise, without a loop over the prefix:
    ///      this runs once per proposal and a byte loop cost about 10,000 gas more.
    function _checkName(string calldata name, address buyer) private pure {
        bytes calldata b = bytes(name);
        if (b.length < PREFIX_LENGTH) revert NameNotBuyers(name, buyer);
        uint256 a = uint160(buyer);
        uint256 head;
        uint256 digits;
        uint256 tail;
        assembly {
            // Inside the name (its length is at least 43): "0x", hex digits 1-32, digits 33-40 and ":".
            head := shr(240, calldataload(b.offset))
            digits := calldataload(add(b.offset, 2))
            tail := shr(184, calldataload(add(b.offset, 34)))
        }
        uint256 wantTail = ((_hexDigits(a & 0xffffffff) & 0xffffffffffffffff) << 8) | 0x3a; // ":"
        if (head != 0x3078 || digits != _hexDigits(a >> 32) || tail != wantTail) revert NameNotBuyers(name, buyer);
        uint256 n = b.length - PREFIX_LENGTH;
        if (n == 0) revert BadShipmentName(name, "empty reference");
        if (n > MAX_REFERENCE) revert BadShipmentName(name, "reference too long");
        uint256 ok = 1;
        assembly {
            // Bit c of the constant is set for the allowed characters c: - . 0-9 A-Z _ a-z.
            let end := add(b.offset, b.length)
            for { let p := add(b.offset, 43) } lt(p, end) { p := add(p, 1) } {
                ok := and(ok, shr(byte(0, calldataload(p)), 0x07fffffe87fffffe03ff600000000000))
            }
        }
        if (ok & 1 == 0) revert BadShipmentName(name, "reference character not allowed");
    }

    /// @dev The lowercase hex digits of the 16 bytes in the low half of `v`, one ASCII digit per byte of
    ///      the word (the most significant digit first): each byte is spread over two, each nibble to its
    ///      own byte, then 0-9 become "0"-"9" and 10-15 "a"-"f" (n + 6 carries into bit 4 exactly when
    ///      n >= 10; "a" - "0" - 10 = 0x27).
    function _hexDigits(uint256 v) private pure returns (uint256 x) {
        x = ((v << 64) | v) & 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff;
        x = ((x << 32) | x) & 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff;
        x = ((x << 16) | x) & 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff;
        x = ((x << 8) | x) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;
        x = ((x << 4) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f)
            | (x & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f);
        uint256 letters = ((x + 0x0606060606060606060606060606060606060606060606060606060606060606) >> 4)
            & 0x0101010101010101010101010101010101010101010101010101010101010101;
        x = x + 0x3030303030303030303030303030303030303030303030303030303030303030 + letters * 0x27;
    }

    function _create(string calldata name, ShipmentTerms memory t) private returns (bytes32) {
        _checkName(name, msg.sender);
        bytes32 shipmentId = shipmentIdOf(name);
        bytes32 key = proposalKey(shipmentId, msg.sender, t.seller);
        Status prior = _proposals[key].status;
        if (prior != Status.None && prior != Status.Cancelled) revert ShipmentExists(shipmentId);
        if (boundTo[shipmentId] != bytes32(0)) revert ShipmentExists(shipmentId);
        if (t.seller == address(0) || address(t.token) == address(0)) revert BadShipment("zero address");
        if (t.seller == msg.sender) revert BadShipment("seller is the buyer");
        if (t.amount == 0) revert BadShipment("amount is zero");
        if (t.expectedDelivery <= block.timestamp) revert BadShipment("expected delivery in the past");
        _checkTerms(t.profile, t.expectedDelivery, t.deadline);
        _checkWindow(t.liveness, t.answerWindow, t.disputeBond);
        uint256 before = t.token.balanceOf(address(this));
        t.token.safeTransferFrom(msg.sender, address(this), t.amount);
        uint256 received = t.token.balanceOf(address(this)) - before;
        if (received == 0) revert BadShipment("nothing received");
        Shipment memory s = Shipment({
            buyer: msg.sender,
            deadline: t.deadline,
            status: Status.Proposed,
            seller: t.seller,
            token: t.token,
            amount: received,
            profile: t.profile,
            expectedDelivery: t.expectedDelivery,
            liveness: t.liveness,
            answerWindow: t.answerWindow,
            disputeBond: t.disputeBond
        });
        _proposals[key] = s;
        bytes32 terms = termsHash(shipmentId, s);
        _emitProposed(shipmentId, s, terms, name);
        if (t.liveness != 0) emit ShipmentWindow(shipmentId, terms, t.liveness, t.answerWindow, t.disputeBond);
        return terms;
    }

    /// @dev Apart from `_create`, whose stack is full.
    function _emitProposed(bytes32 shipmentId, Shipment memory s, bytes32 terms, string calldata name) private {
        emit ShipmentProposed(
            shipmentId, s.buyer, s.seller, terms, s.amount, s.profile, s.expectedDelivery, s.deadline, name
        );
    }

    /// @dev A window is off (all zero) or 1 .. MAX_WINDOW seconds with an answer window of 1 .. MAX_WINDOW.
    function _checkWindow(uint32 liveness, uint32 answerWindow, uint128 bond) private pure {
        if (liveness == 0) {
            if (answerWindow != 0 || bond != 0) revert BadWindow("no liveness window: no dispute terms");
            return;
        }
        if (liveness > MAX_WINDOW) revert BadWindow("liveness too long");
        if (answerWindow == 0 || answerWindow > MAX_WINDOW) revert BadWindow("answer window out of range");
    }

    /// @notice The seller accepts `buyer`'s proposal for `shipmentId` on the terms hashed in `terms`
    ///         (`termsHash`, as emitted by ShipmentProposed). Binds the id to these parties.
    function acceptShipment(bytes32 shipmentId, address buyer, bytes32 terms) external {
        bytes32 key = proposalKey(shipmentId, buyer, msg.sender);
        Shipment storage s = _proposals[key];
        if (s.status != Status.Proposed) revert NotProposed(shipmentId);
        bytes32 actual = termsHash(shipmentId, s);
        if (actual != terms) revert TermsChanged(terms, actual);
        if (boundTo[shipmentId] != bytes32(0)) revert ShipmentExists(shipmentId);
        _checkTerms(s.profile, s.expectedDelivery, s.deadline);
        s.status = Status.Open;
        boundTo[shipmentId] = key;
        router.subscribe(shipmentId);
        emit ShipmentRegistered(shipmentId, buyer, msg.sender, address(s.token), s.amount, s.profile, s.deadline);
    }

    /// @notice Before the seller accepts, the buyer may withdraw the proposal and the whole deposit.
    function cancelShipment(bytes32 shipmentId, address seller) external {
        Shipment storage s = _proposals[proposalKey(shipmentId, msg.sender, seller)];
        if (s.status != Status.Proposed) revert NotProposed(shipmentId);
        s.status = Status.Cancelled;
        s.token.safeTransfer(msg.sender, s.amount);
        emit ShipmentCancelled(shipmentId, msg.sender, seller, s.amount);
    }

    function _checkTerms(bytes32 profile, uint64 expectedDelivery, uint64 deadline) private view {
        Profile memory p = _profiles[profile];
        if (p.fileHash == bytes32(0)) revert UnknownProfile(profile);
        uint64 earliest = expectedDelivery + p.minSettlementS;
        if (deadline < earliest) revert DeadlineTooEarly(deadline, earliest);
    }

    /// @notice The accepted shipment bound to `shipmentId` (status None if none is bound).
    function shipment(bytes32 shipmentId) external view returns (Shipment memory) {
        return _proposals[boundTo[shipmentId]];
    }

    /// @notice A proposal (accepted or not) by its parties.
    function proposal(bytes32 shipmentId, address buyer, address seller) external view returns (Shipment memory) {
        return _proposals[proposalKey(shipmentId, buyer, seller)];
    }

    // -- settlement -------------------------------------------------------------------------------

    /// @inheritdoc IReportSubscriber
    function onReport(Report calldata report) external override {
        if (msg.sender != address(router)) revert NotRouter(msg.sender);
        if (report.kind != ReportKinds.COLDCHAIN_VERDICT) return;
        bytes32 key = boundTo[report.subject];
        if (key == bytes32(0)) return;
        Shipment storage s = _proposals[key];
        if (s.status != Status.Open) return;
        if (s.liveness == 0) {
            _apply(report.subject, s, report.value, report.epoch);
            return;
        }
        // The router bounds a cold-chain value to 0 .. 2 and its epoch rises strictly per subject, so this
        // verdict is the shipment's latest: it replaces the held one (0 clears it) and its window starts.
        int8 value = report.value == BREACH || report.value == DELIVERED ? int8(report.value) : int8(0);
        _held[report.subject] = HeldVerdict({value: value, epoch: report.epoch, arrivedAt: uint40(block.timestamp)});
        emit VerdictHeld(report.subject, report.epoch, value, uint64(block.timestamp) + s.liveness);
    }

    /// @notice Apply the held verdict of `shipmentId` once its liveness window has passed and it is not
    ///         under an open dispute (anyone): BREACH refunds the buyer, DELIVERED pays the seller.
    function finalize(bytes32 shipmentId) external {
        Shipment storage s = _proposals[boundTo[shipmentId]];
        if (s.status != Status.Open) revert NotOpen(shipmentId);
        HeldVerdict memory h = _held[shipmentId];
        if (h.value == 0) revert NotFinal(shipmentId, "no verdict held");
        if (block.timestamp < uint256(h.arrivedAt) + s.liveness) revert NotFinal(shipmentId, "liveness window open");
        if (_disputes[shipmentId][h.epoch].status == DisputeStatus.Open) revert NotFinal(shipmentId, "disputed");
        _apply(shipmentId, s, h.value, h.epoch);
    }

    /// @dev Settle an open shipment on a verdict: 1 voids (refund), 2 releases (pay), 0 changes nothing.
    function _apply(bytes32 shipmentId, Shipment storage s, int256 value, uint64 epoch) private {
        if (value == BREACH) {
            s.status = Status.Voided;
            s.token.safeTransfer(s.buyer, s.amount);
            emit ShipmentVoided(shipmentId, epoch, s.amount);
        } else if (value == DELIVERED) {
            s.status = Status.Released;
            s.token.safeTransfer(s.seller, s.amount);
            emit ShipmentReleased(shipmentId, epoch, s.amount);
        }
    }

    /// @notice The verdict held for `shipmentId` (value 0: none) and when it may be finalized.
    function heldVerdict(bytes32 shipmentId) external view returns (HeldVerdict memory h, uint64 releasableAt) {
        h = _held[shipmentId];
        releasableAt = uint64(h.arrivedAt) + _proposals[boundTo[shipmentId]].liveness;
    }

    /// @notice Whether the verdict held for `shipmentId` is under an open dispute (nothing pays on it).
    function frozen(bytes32 shipmentId) public view returns (bool) {
        HeldVerdict memory h = _held[shipmentId];
        return h.value != 0 && _disputes[shipmentId][h.epoch].status == DisputeStatus.Open;
    }

    // -- disputes ---------------------------------------------------------------------------------

    /// @notice Dispute the verdict (subject = shipment id, epoch) while it is held inside its liveness
    ///         window. Takes the terms' bond in the shipment's token from the caller (approve this escrow
    ///         first) into the vault; the bond recorded is what the vault received. `evidenceCid` names
    ///         the watcher's evidence.
    function dispute(bytes32 subject, uint64 epoch, string calldata evidenceCid) external {
        Shipment storage s = _proposals[boundTo[subject]];
        if (s.status != Status.Open) revert NotDisputable(subject, epoch, "shipment not open");
        uint256 bond = s.disputeBond;
        if (bond == 0) revert DisputesOff(subject);
        HeldVerdict memory h = _held[subject];
        if (h.value == 0 || h.epoch != epoch) revert NotDisputable(subject, epoch, "not the held verdict");
        if (block.timestamp >= uint256(h.arrivedAt) + s.liveness) {
            revert NotDisputable(subject, epoch, "liveness window over");
        }
        Dispute storage d = _disputes[subject][epoch];
        if (d.status != DisputeStatus.None) revert NotDisputable(subject, epoch, "already disputed");
        IERC20 token = s.token;
        uint256 before = token.balanceOf(address(bonds));
        token.safeTransferFrom(msg.sender, address(bonds), bond);
        uint256 received = token.balanceOf(address(bonds)) - before;
        _disputes[subject][epoch] = Dispute({
            watcher: msg.sender,
            filedAt: uint40(block.timestamp),
            status: DisputeStatus.Open,
            bond: uint128(received)
        });
        openBonds[address(token)] += received;
        emit DisputeFiled(subject, epoch, msg.sender, received, evidenceCid);
    }

    /// @notice Settle an open dispute (anyone). Upheld when the escrow has since heard a later verdict
    ///         for the shipment (the network replaced it): the bond goes back to the watcher (reward 0).
    ///         Otherwise rejected once the answer window has passed since filing: the bond goes to the
    ///         party the frozen verdict pays (buyer on BREACH, seller on DELIVERED), and the verdict, no
    ///         longer frozen, applies at once if its liveness window is over (else `finalize` later).
    function resolveDispute(bytes32 subject, uint64 epoch) external returns (bool upheld) {
        Dispute storage d = _disputes[subject][epoch];
        if (d.status != DisputeStatus.Open) revert NoOpenDispute(subject, epoch);
        Shipment storage s = _proposals[boundTo[subject]];
        uint256 bond = d.bond;
        address watcher = d.watcher;
        HeldVerdict memory h = _held[subject];
        if (h.epoch > epoch) {
            d.status = DisputeStatus.Upheld;
            openBonds[address(s.token)] -= bond;
            bonds.pay(s.token, watcher, bond);
            emit DisputeUpheld(subject, epoch, watcher, bond, 0);
            return true;
        }
        uint256 rejectableAt = uint256(d.filedAt) + s.answerWindow;
        if (block.timestamp < rejectableAt) revert DisputeUnanswered(subject, epoch, rejectableAt);
        d.status = DisputeStatus.Rejected;
        openBonds[address(s.token)] -= bond;
        // Still held and frozen until now, so the shipment is open and h is this verdict (1 or 2).
        bonds.pay(s.token, h.value == BREACH ? s.buyer : s.seller, bond);
        emit DisputeRejected(subject, epoch, watcher, bond);
        if (s.status == Status.Open && block.timestamp >= uint256(h.arrivedAt) + s.liveness) {
            _apply(subject, s, h.value, h.epoch);
        }
        return false;
    }

    /// @notice The dispute of verdict (subject, epoch), if any.
    function disputeOf(bytes32 subject, uint64 epoch) external view returns (Dispute memory) {
        return _disputes[subject][epoch];
    }

    /// @notice Refund an accepted, unsettled shipment to its buyer after the deadline.
    function reclaim(bytes32 shipmentId) external {
        Shipment storage s = _proposals[boundTo[shipmentId]];
        if (s.status != Status.Open) revert NotOpen(shipmentId);
        if (msg.sender != s.buyer) revert NotBuyer(msg.sender);
        if (block.timestamp <= s.deadline) revert DeadlineNotReached(s.deadline);
        HeldVerdict memory h = _held[shipmentId];
        if (h.value != 0) revert VerdictHeldBack(shipmentId, h.epoch);
        s.status = Status.Reclaimed;
        s.token.safeTransfer(s.buyer, s.amount);
        emit ShipmentReclaimed(shipmentId, s.amount);
    }
}
