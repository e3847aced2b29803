// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";

/// @title ColdChainEscrow
/// @notice A buyer escrows payment for a temperature-controlled shipment on terms its seller accepts.
///
///         1. The buyer proposes (`createShipment`): shipment id, seller, token, amount, profile, expected
///            delivery and deadline, and deposits the amount. The amount recorded is what the escrow
///            received (balance difference), so a fee-on-transfer token cannot overstate it. The profile
///            must be in this contract's profile registry, and the deadline at least the profile's
///            minimum settlement window after the expected delivery, so a verdict can exist before it.
///         2. Until the seller accepts, nothing can settle the deposit: a verdict for the shipment id is
///            ignored and the buyer may `cancelShipment` at any time and get the whole deposit back.
///         3. The seller accepts (`acceptShipment`) the exact terms, named by their hash. Only then is the
///            shipment id bound to this buyer and seller and subscribed to the router's reports.
///         4. The shipment's COLDCHAIN_VERDICT report settles it: 1 (BREACH) refunds the buyer,
///            2 (DELIVERED) pays the seller, 0 (no decision) changes nothing. After the deadline the buyer
///            can reclaim an accepted, unsettled shipment, so funds are never locked forever. Each
///            shipment settles exactly once.
///
///         Proposals are keyed by (shipment id, buyer, seller): nobody can block or replace another
///         party's proposal by proposing the same id first. The id is bound to its parties when the seller
///         accepts; a second acceptance of the same id reverts.
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
    }

    struct Profile {
        bytes32 fileHash;
        uint64 minSettlementS;
    }

    int256 private constant BREACH = 1;
    int256 private constant DELIVERED = 2;

    IOracleRouter public immutable router;
    address public owner;
    mapping(bytes32 => Profile) private _profiles;
    /// proposal key (keccak256(shipmentId, buyer, seller)) => terms and state
    mapping(bytes32 => Shipment) private _proposals;
    /// shipment id => the accepted proposal's key
    mapping(bytes32 => bytes32) public boundTo;

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
        uint64 deadline
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

    error NotRouter(address caller);
    error NotOwner(address caller);
    error ShipmentExists(bytes32 shipmentId);
    error BadShipment(string why);
    error NotBuyer(address caller);
    error NotOpen(bytes32 shipmentId);
    error NotProposed(bytes32 shipmentId);
    error TermsChanged(bytes32 expected, bytes32 actual);
    error UnknownProfile(bytes32 profile);
    error DeadlineTooEarly(uint64 deadline, uint64 earliest);
    error DeadlineNotReached(uint64 deadline);

    constructor(IOracleRouter router_) {
        router = router_;
        owner = msg.sender;
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

    /// @notice The hash the seller accepts: every term of the proposal, amount as received.
    function termsHash(bytes32 shipmentId, Shipment memory s) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                shipmentId, s.buyer, s.seller, s.token, s.amount, s.profile, s.expectedDelivery, s.deadline
            )
        );
    }

    /// @notice Propose a shipment to `seller` and deposit `amount` of `token` from the caller (the buyer),
    ///         who must have approved this contract. `shipmentId` is the report subject
    ///         (subject_id("shipment", …)). Returns the terms hash the seller accepts.
    /// @param expectedDelivery unix seconds the shipment is expected to arrive.
    /// @param deadline unix seconds after which the buyer may reclaim an accepted, unsettled shipment;
    ///        at least the profile's minimum settlement window after `expectedDelivery`.
    function createShipment(
        bytes32 shipmentId,
        address seller,
        IERC20 token,
        uint256 amount,
        bytes32 profile,
        uint64 expectedDelivery,
        uint64 deadline
    ) external returns (bytes32) {
        bytes32 key = proposalKey(shipmentId, msg.sender, seller);
        Status prior = _proposals[key].status;
        if (prior != Status.None && prior != Status.Cancelled) revert ShipmentExists(shipmentId);
        if (boundTo[shipmentId] != bytes32(0)) revert ShipmentExists(shipmentId);
        if (seller == address(0) || address(token) == address(0)) revert BadShipment("zero address");
        if (seller == msg.sender) revert BadShipment("seller is the buyer");
        if (amount == 0) revert BadShipment("amount is zero");
        if (expectedDelivery <= block.timestamp) revert BadShipment("expected delivery in the past");
        _checkTerms(profile, expectedDelivery, deadline);
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received == 0) revert BadShipment("nothing received");
        Shipment memory s = Shipment({
            buyer: msg.sender,
            deadline: deadline,
            status: Status.Proposed,
            seller: seller,
            token: token,
            amount: received,
            profile: profile,
            expectedDelivery: expectedDelivery
        });
        _proposals[key] = s;
        bytes32 terms = termsHash(shipmentId, s);
        emit ShipmentProposed(shipmentId, msg.sender, seller, terms, received, profile, expectedDelivery, deadline);
        return terms;
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
        if (report.value == BREACH) {
            s.status = Status.Voided;
            s.token.safeTransfer(s.buyer, s.amount);
            emit ShipmentVoided(report.subject, report.epoch, s.amount);
        } else if (report.value == DELIVERED) {
            s.status = Status.Released;
            s.token.safeTransfer(s.seller, s.amount);
            emit ShipmentReleased(report.subject, report.epoch, s.amount);
        }
    }

    /// @notice Refund an accepted, unsettled shipment to its buyer after the deadline.
    function reclaim(bytes32 shipmentId) external {
        Shipment storage s = _proposals[boundTo[shipmentId]];
        if (s.status != Status.Open) revert NotOpen(shipmentId);
        if (msg.sender != s.buyer) revert NotBuyer(msg.sender);
        if (block.timestamp <= s.deadline) revert DeadlineNotReached(s.deadline);
        s.status = Status.Reclaimed;
        s.token.safeTransfer(s.buyer, s.amount);
        emit ShipmentReclaimed(shipmentId, s.amount);
    }
}
