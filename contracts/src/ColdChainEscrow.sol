// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IOracleRouter, IReportSubscriber, Report, ReportKinds} from "./interfaces/IOracleRouter.sol";

/// @title ColdChainEscrow
/// @notice A buyer escrows payment for a temperature-controlled shipment. The shipment's
///         COLDCHAIN_VERDICT report settles it: 1 (BREACH) refunds the buyer, 2 (DELIVERED) pays the
///         seller, 0 (no decision) changes nothing. After the deadline the buyer can reclaim an open
///         shipment, so funds are never locked forever. Each shipment settles exactly once: whichever
///         comes first, a verdict (even one accepted after the deadline) or the buyer's reclaim.
/// @dev Shipment ids are global: whoever registers an id first owns it. Name shipments so that ids
///      are not guessable before registration (e.g. include the buyer) to avoid front-running.
contract ColdChainEscrow is IReportSubscriber {
    using SafeERC20 for IERC20;

    enum Status {
        None,
        Open,
        Voided,
        Released,
        Reclaimed
    }

    struct Shipment {
        address buyer;
        uint64 deadline;
        Status status;
        address seller;
        IERC20 token;
        uint256 amount;
        bytes32 profile;
    }

    int256 private constant BREACH = 1;
    int256 private constant DELIVERED = 2;

    IOracleRouter public immutable router;
    mapping(bytes32 => Shipment) private _shipments;

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
    error ShipmentExists(bytes32 shipmentId);
    error BadShipment(string why);
    error NotBuyer(address caller);
    error NotOpen(bytes32 shipmentId);
    error DeadlineNotReached(uint64 deadline);

    constructor(IOracleRouter router_) {
        router = router_;
    }

    /// @notice Register a shipment and escrow `amount` of `token` from the caller (the buyer), who must
    ///         have approved this contract. `shipmentId` is the report subject (subject_id("shipment", …)).
    /// @param deadline unix seconds after which the buyer may reclaim an unsettled shipment.
    function createShipment(
        bytes32 shipmentId,
        address seller,
        IERC20 token,
        uint256 amount,
        bytes32 profile,
        uint64 deadline
    ) external {
        if (_shipments[shipmentId].status != Status.None) revert ShipmentExists(shipmentId);
        if (seller == address(0) || address(token) == address(0)) revert BadShipment("zero address");
        if (amount == 0) revert BadShipment("amount is zero");
        if (deadline <= block.timestamp) revert BadShipment("deadline in the past");
        _shipments[shipmentId] = Shipment({
            buyer: msg.sender,
            deadline: deadline,
            status: Status.Open,
            seller: seller,
            token: token,
            amount: amount,
            profile: profile
        });
        token.safeTransferFrom(msg.sender, address(this), amount);
        router.subscribe(shipmentId);
        emit ShipmentRegistered(shipmentId, msg.sender, seller, address(token), amount, profile, deadline);
    }

    function shipment(bytes32 shipmentId) external view returns (Shipment memory) {
        return _shipments[shipmentId];
    }

    /// @inheritdoc IReportSubscriber
    function onReport(Report calldata report) external override {
        if (msg.sender != address(router)) revert NotRouter(msg.sender);
        if (report.kind != ReportKinds.COLDCHAIN_VERDICT) return;
        Shipment storage s = _shipments[report.subject];
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

    /// @notice Refund an unsettled shipment to its buyer after the deadline.
    function reclaim(bytes32 shipmentId) external {
        Shipment storage s = _shipments[shipmentId];
        if (s.status != Status.Open) revert NotOpen(shipmentId);
        if (msg.sender != s.buyer) revert NotBuyer(msg.sender);
        if (block.timestamp <= s.deadline) revert DeadlineNotReached(s.deadline);
        s.status = Status.Reclaimed;
        s.token.safeTransfer(s.buyer, s.amount);
        emit ShipmentReclaimed(shipmentId, s.amount);
    }
}
